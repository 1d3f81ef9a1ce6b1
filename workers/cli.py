"""Operator commands: ``python -m workers.cli <command>``.

register-shop   add or update a shop (domain, token, API URL, version, tag language)
status          where a return stands (the status API's answer, read from Postgres)
timeline        every Shopify call made for an order, oldest first
replay          put an order's failed or waiting events back in the queue
"""

from __future__ import annotations

import argparse
import json
import sys


def _register_shop(args: argparse.Namespace) -> int:
    from workers.store.shops import register_shop

    overrides = dict(item.split("=", 1) for item in args.reason_override or [])
    shop = register_shop(
        args.domain,
        args.token,
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


def _replay(args: argparse.Namespace) -> int:
    from workers import doorbell, repair

    count = repair.replay(args.order_id, doorbell.ring)
    print(f"{count} event(s) of order {args.order_id} queued again")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workers.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    reg = commands.add_parser("register-shop", help="add or update a shop")
    reg.add_argument("domain")
    reg.add_argument("--token", required=True)
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

    replay = commands.add_parser("replay", help="queue an order's failed/waiting events again")
    replay.add_argument("order_id", type=int)
    replay.set_defaults(func=_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
