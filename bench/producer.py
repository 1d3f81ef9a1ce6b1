"""A stand-in for the returns platform: sign an event as the producer does and post it.

    python -m bench.producer 02-created.json [--new-id] [--url URL] [--wait SECONDS]

Not part of the product (the platform is another company's system); it lives with the benchmarks,
which play the producer too. ``EVENT`` is a file, or a name in ``bench/examples/`` (the
producer's examples, from ../shared/spec/examples/). After a 2xx it polls the status API until
the return is no longer pending and prints the answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from config import get_settings
from web.signatures import sign

EXAMPLES = Path(__file__).resolve().parent / "examples"


def send(event: dict[str, Any], url: str, secret: str) -> requests.Response:
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", **sign(body, str(event["id"]), secret)}
    return requests.post(url, data=body, headers=headers, timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.producer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("event", help=f"a file, or a name in {EXAMPLES}")
    parser.add_argument("--url", help="ingest endpoint; default: this machine's")
    parser.add_argument("--new-id", action="store_true", help="give the event a fresh id")
    parser.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the sync (0: don't)")
    args = parser.parse_args(argv)

    path = Path(args.event)
    if not path.exists():
        path = EXAMPLES / args.event
    event = json.loads(path.read_text())
    if args.new_id:
        event["id"] = f"evt_{uuid.uuid4().hex[:20]}"
    settings = get_settings()
    url = args.url or f"http://{settings.ingest_host}:{settings.ingest_port}/v1/return-events"
    response = send(event, url, settings.ingest_secrets[0])
    print(f"{response.status_code} {response.text.strip()}")
    if response.status_code >= 300 or not args.wait:
        return 0 if response.status_code < 300 else 1

    status_url = url.replace("/v1/return-events", f"/v1/returns/{event['shop']}/{event['return']['id']}")
    headers = {"Authorization": f"Bearer {settings.status_api_token}"}
    deadline = time.monotonic() + args.wait
    answer: dict[str, Any] = {}
    while time.monotonic() < deadline:
        answer = requests.get(status_url, headers=headers, timeout=10).json()
        if answer.get("sync") not in (None, "pending"):
            break
        time.sleep(0.1)
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
