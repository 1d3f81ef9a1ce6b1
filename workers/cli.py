"""Operator commands: ``python -m workers.cli <command>``.

register-shop   add or update a shop with a static token read from stdin (API URL, version, language),
                or --client-credentials: a Dev Dashboard app on one of our own stores
install-link    where a merchant installs (or reinstalls) the app
data-requests   customers/data_request reports, for an operator to send on
rotate-token-key  re-encrypt every stored token under the first TOKEN_ENCRYPTION_KEYS key
status          where a return stands (the status API's answer, read from Postgres)
timeline        every Shopify call made for an order, oldest first
replay          put an order's failed or waiting events back to work (the relay rings it)
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from config import get_settings, require_safe


def _read_token() -> str:
    """The token from stdin (piped, or typed without echo): never from argv, where ``ps`` and the
    shell's history would keep it."""
    if sys.stdin.isatty():
        return getpass.getpass("access token: ").strip()
    return sys.stdin.readline().strip()


def _register_shop(args: argparse.Namespace) -> int:
    from workers.store.shops import register_shop

    if args.client_credentials:
        from workers.install import install_client_credentials

        shop = install_client_credentials(args.domain)
        print(f"shop {shop.domain} installed with the client credentials grant (id {shop.id})")
        return 0
    token = _read_token()
    if not token:
        print(
            'no token on stdin (pipe it in: printf %s "$TOKEN" | ... register-shop DOMAIN)', file=sys.stderr
        )
        return 2
    overrides = dict(item.split("=", 1) for item in args.reason_override or [])
    shop = register_shop(
        args.domain,
        token,
        api_url=args.api_url,
        api_version=args.api_version,
        tag_language=args.language,
        reason_overrides=overrides,
    )
    print(f"shop {shop.domain} registered (id {shop.id}), Shopify endpoint {shop.graphql_url}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from workers.store.inbox import return_status

    answer = return_status(args.shop, args.return_id)
    if answer is None:
        print("no event of that return was ever accepted", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, default=str))
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from workers.store.calls import calls_for_order

    for call in calls_for_order(args.order_id):
        print(json.dumps(call, default=str))
    return 0


def _install_link(args: argparse.Namespace) -> int:
    from workers.store.shops import install_link

    print(install_link(args.domain))
    return 0


def _data_requests(args: argparse.Namespace) -> int:
    from workers.store.privacy import data_requests

    for request in data_requests():
        print(json.dumps(request, default=str))
    return 0


def _rotate_token_key(args: argparse.Namespace) -> int:
    from workers.store.shops import reencrypt_tokens

    print(f"{reencrypt_tokens()} token(s) re-encrypted under the first TOKEN_ENCRYPTION_KEYS key")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from workers import repair

    count = repair.replay(args.order_id)
    print(f"{count} event(s) of order {args.order_id} queued again")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    reg = commands.add_parser("register-shop", help="add or update a shop (the token comes on stdin)")
    reg.add_argument("domain")
    reg.add_argument(
        "--client-credentials",
        action="store_true",
        help="our own store: get a token with the app's credentials",
    )
    reg.add_argument("--api-url", help="URL template with {shop} and {version}; default: Shopify's")
    reg.add_argument("--api-version", help="default: SHOPIFY_API_VERSION (2026-07)")
    reg.add_argument("--language", choices=["en", "nl"], default="en", help="refund-method tag language")
    reg.add_argument("--reason-override", action="append", metavar="REASON_ID=HANDLE")
    reg.set_defaults(func=_register_shop)

    status = commands.add_parser("status", help="where a return stands")
    status.add_argument("shop")
    status.add_argument("return_id")
    status.set_defaults(func=_status)

    timeline = commands.add_parser("timeline", help="Shopify calls of an order")
    timeline.add_argument("order_id", type=int)
    timeline.set_defaults(func=_timeline)

    link = commands.add_parser("install-link", help="the (re)install link of a shop")
    link.add_argument("domain")
    link.set_defaults(func=_install_link)

    requests_ = commands.add_parser("data-requests", help="customers/data_request reports")
    requests_.set_defaults(func=_data_requests)

    rotate = commands.add_parser("rotate-token-key", help="re-encrypt stored tokens under the first key")
    rotate.set_defaults(func=_rotate_token_key)

    replay = commands.add_parser("replay", help="queue an order's failed/waiting events again")
    replay.add_argument("order_id", type=int)
    replay.set_defaults(func=_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    require_safe(get_settings(), "cli")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
