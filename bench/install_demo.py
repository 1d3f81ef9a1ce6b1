"""Install the app on the stand-in's demo shop through the real flow, as a merchant's browser would.

    python -m bench.install_demo acme-nl.myshopify.com      (what `make run` does once all is up)

Follows our install link to the stand-in's grant screen (which approves at once) and back to our
callback, then prints the page's verdict. Waits (bounded) for the web process and the stand-in.
"""

from __future__ import annotations

import re
import sys
import time

import requests

from config import get_settings


def _wait(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not come up within {timeout_s:g}s")


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    shop = args[0] if args else "acme-nl.myshopify.com"
    settings = get_settings()
    _wait(f"http://{settings.standin_host}:{settings.standin_port}/_standin/health")
    _wait(f"{settings.app_url}/readyz")
    page = requests.get(f"{settings.app_url}/shopify/install", params={"shop": shop}, timeout=60)
    title = re.search(r"<h1>(.*?)</h1>", page.text)
    print(f"  install {shop}: HTTP {page.status_code} {title.group(1) if title else ''}")
    return 0 if page.status_code == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
