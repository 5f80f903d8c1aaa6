"""``python -m lftrace.server [--host H] [--port P] [--store PATH] [--forward]``: until ``lftrace serve`` exists."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..config import Settings
from ..errors import LftraceError
from .run import DEFAULT_HOST, DEFAULT_PORT, ServeOptions, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lftrace.server")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--public-key")
    parser.add_argument("--secret-key")
    parser.add_argument("--forward", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = Settings.resolve({"store": args.store} if args.store else None)
        options = ServeOptions(args.host, args.port, args.store, args.public_key, args.secret_key, args.forward)
        return serve(options, settings)
    except LftraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)


if __name__ == "__main__":
    sys.exit(main())
