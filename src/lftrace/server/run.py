"""Run the server: check the settings, bind, print what to set, serve with uvicorn until Ctrl-C or SIGTERM.

The socket is bound here (not by uvicorn) so a busy port is a one-line error with exit 2, and ``--port 0``
picks a free port that the banner then names. ``--forward`` starts the outbox delivery thread towards the
upstream configured as for every other command (LANGFUSE_* keys/host, OTEL_EXPORTER_OTLP_*).
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO
from urllib.parse import urlparse

import uvicorn

from ..config import Settings, is_loopback_host, mask_secret
from ..errors import ConfigError, ExitStatus
from .app import ServerSettings, create_app

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000


@dataclass(frozen=True)
class ServeOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    store: Path | None = None
    public_key: str | None = None
    secret_key: str | None = None
    forward: bool = False


def check_options(options: ServeOptions, settings: Settings) -> tuple[str | None, str | None]:
    """The server's keys; refuse a non-loopback bind without keys (ConfigError: exit 2)."""
    public_key = options.public_key or settings.public_key
    secret_key = options.secret_key or settings.secret_key
    if bool(public_key) != bool(secret_key):
        raise ConfigError("give both --public-key and --secret-key (or LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY)")
    if not is_loopback_host(options.host, subdomains=False) and not (public_key and secret_key):
        raise ConfigError(
            f"refusing to listen on {options.host} without keys: anyone on the network could write traces; "
            "set --public-key/--secret-key (or LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY), or use --host 127.0.0.1"
        )
    if not 0 <= options.port <= 65535:
        raise ConfigError(f"--port {options.port} is not a port number (0-65535; 0 picks a free port)")
    return public_key, secret_key


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"cannot listen on {host}:{port}: the port is in use (pick another --port)") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (check --host)") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def banner(url: str, store: Path, public_key: str | None, forward: list[str]) -> str:
    if public_key:
        keys = f"  LANGFUSE_PUBLIC_KEY={public_key}\n  LANGFUSE_SECRET_KEY=<the secret key given to lftrace serve>\n"
        auth = "Basic auth: only the keys below"
    else:
        keys = "  LANGFUSE_PUBLIC_KEY=pk-lf-local\n  LANGFUSE_SECRET_KEY=sk-lf-local\n"
        auth = "no keys configured: any key pair accepted, loopback clients only"
    lines = (
        f"lftrace serve: listening on {url} ({auth})\n"
        f"store: {store}\n"
        f"forwarding to: {', '.join(forward) if forward else 'nowhere (add --forward to relay upstream)'}\n"
        "Set in the traced program:\n"
        f"  LANGFUSE_HOST={url}\n"
        f"  LANGFUSE_BASE_URL={url}\n"
        f"{keys}"
        f"  OTEL_EXPORTER_OTLP_ENDPOINT={url}\n"
        f"Web view: {url}/\n"
        "Press Ctrl-C to stop."
    )
    return lines


def _upstream_is_self(settings: Settings, host: str, port: int) -> bool:
    for url in (settings.base_url if settings.langfuse_enabled else None, settings.otlp_endpoint):
        if not url:
            continue
        parsed = urlparse(url)
        same_host = parsed.hostname == host or (is_loopback_host(parsed.hostname) and is_loopback_host(host))
        if same_host and (parsed.port or (443 if parsed.scheme == "https" else 80)) == port:
            return True
    return False


def serve(
    options: ServeOptions,
    settings: Settings,
    out: TextIO | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serve until a signal; returns the exit code (0 after a clean stop, 130 Ctrl-C, 143 SIGTERM)."""
    out = out or sys.stdout
    public_key, secret_key = check_options(options, settings)
    store_path = Path(options.store or settings.store).expanduser()
    sock = bind(options.host, options.port)
    port = sock.getsockname()[1]
    host_in_url = f"[{options.host}]" if ":" in options.host else options.host
    url = f"http://{host_in_url}:{port}"

    from ..store import TraceStore

    deliverer: Any = None
    destination_names: list[str] = []
    try:
        store = TraceStore(store_path)
        if options.forward:
            from ..delivery import Deliverer, destinations_for

            if _upstream_is_self(settings, options.host, port):
                raise ConfigError(
                    f"--forward would send traces to this server itself ({url}): set LANGFUSE_HOST/"
                    "OTEL_EXPORTER_OTLP_ENDPOINT to the upstream, not to lftrace serve"
                )
            destinations = destinations_for(settings)
            if not destinations:
                raise ConfigError(
                    "--forward needs an upstream: set LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY (and LANGFUSE_HOST) "
                    "or OTEL_EXPORTER_OTLP_ENDPOINT"
                )
            deliverer = Deliverer(store, destinations, settings)
            destination_names = [d.name for d in destinations]
    except BaseException:
        sock.close()
        raise

    app = create_app(
        ServerSettings(
            store_path=store_path,
            public_key=public_key,
            secret_key=secret_key,
            destinations=tuple(destination_names),
        ),
        store=store,
    )
    if deliverer is not None:
        deliverer.start_background(min(settings.flush_interval, 1.0))
        app.state.ingestor.after_write = deliverer.wake
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    text = banner(url, store_path, public_key, [_masked_destination(n) for n in destination_names])

    def ready() -> None:  # once listening, with our signal handlers in place: Ctrl-C from here on is clean
        print(text, file=out, flush=True)
        if on_ready is not None:
            on_ready(url)

    server = _Server(config, ready)
    try:
        server.run(sockets=[sock])
    finally:
        if deliverer is not None:
            deliverer.stop()
        store.close()
        sock.close()
    with contextlib.suppress(OSError):  # stdout may be gone (a closed pipe): stopping cleanly matters more
        print("lftrace serve: stopped", file=out, flush=True)
    if server.signal_received == signal.SIGINT:
        return int(ExitStatus.INTERRUPTED)
    if server.signal_received == signal.SIGTERM:
        return 143
    return 0


def _masked_destination(name: str) -> str:
    kind, _, url = name.partition(":")
    return f"{kind} {url}" if url else mask_secret(name)


class _Server(uvicorn.Server):
    """uvicorn.Server that remembers the signal (for the exit code) instead of re-raising it after shutdown."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.signal_received: int | None = None
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.signal_received is None:
            self.signal_received = sig
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for open connections
        self.should_exit = True
