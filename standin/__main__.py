"""`python -m standin [--host H] [--port 8081] [--seed-file path]`: run the stand-in."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from config.settings import get_settings
from standin.schema import KNOWN_VERSIONS, get_schema
from standin.server import load_seed, make_server


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m standin", description=__doc__)
    parser.add_argument("--host", default=settings.standin_host)
    parser.add_argument("--port", type=int, default=settings.standin_port)
    parser.add_argument("--seed-file", type=Path, help="JSON seed (see standin/demo_seed.json)")
    parser.add_argument(
        "--no-warm", action="store_true", help="build schemas on first request instead of at start-up"
    )
    args = parser.parse_args(argv)
    server = make_server(args.port, args.host)
    if args.seed_file:
        load_seed(server.store, json.loads(args.seed_file.read_text()))
    if not args.no_warm:
        # ~2.5 s per version: pay it before the first client is waiting.
        for version in KNOWN_VERSIONS:
            get_schema(version)
    # shutdown() waits for serve_forever() to return, so it must not run on the serving thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"standin listening on http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
