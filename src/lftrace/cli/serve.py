"""``lftrace serve``: the local Langfuse-compatible server (see ``lftrace.server``).

starlette/uvicorn and the server modules are imported inside the command, so other commands never load them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, resolve_settings, store_path


@app.command("serve")
def serve_command(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on; other than loopback it needs keys.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0 picks a free one).")] = 3000,
    store: Annotated[
        Path | None, typer.Option("--store", help="Trace store to write into (default: as for every command).")
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key", help="Accept only this public key (default: LANGFUSE_PUBLIC_KEY).", show_default=False
        ),
    ] = None,
    secret_key: Annotated[
        str | None,
        typer.Option(
            "--secret-key", help="Accept only this secret key (default: LANGFUSE_SECRET_KEY).", show_default=False
        ),
    ] = None,
    forward: Annotated[
        bool,
        typer.Option(
            "--forward", help="Relay everything received to the configured Langfuse / OTLP upstream (via the outbox)."
        ),
    ] = False,
) -> None:
    """Run a local Langfuse-compatible server: code using the official SDKs or OpenTelemetry works unchanged.

    Ingests OTLP/HTTP (/api/public/otel/v1/traces, /v1/traces), scores (/api/public/scores) and the legacy /api/public/ingestion batch endpoint, serves the Langfuse public read API and a web view at /, and writes everything into the trace store, so `show`, `list`, `stats`, `test` and `export` see it. Stop with Ctrl-C (exit 130) or SIGTERM (143).

    [bold]Example[/bold]

      lftrace serve --port 3000
      LANGFUSE_HOST=http://127.0.0.1:3000 python app.py   # in another shell
    """
    from ..server.run import ServeOptions, serve

    settings = resolve_settings(**({"store": store} if store is not None else {}))
    options = ServeOptions(
        host=host,
        port=port,
        store=store.expanduser() if store is not None else store_path(),
        public_key=public_key,
        secret_key=secret_key,
        forward=forward,
    )
    code = serve(options, settings)
    if code:
        raise typer.Exit(code)
