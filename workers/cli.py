"""The operator's one entry point: ``python -m workers.cli <command> --help``.

Tables by default, ``--json`` for scripts. Repairs (``retry``, ``reset``) only change Postgres; the
relay rings the orders they touch.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

from config import get_settings, require_safe
from config import logging as log_config
from workers.statuses import Category, SyncState

Handler = Callable[[argparse.Namespace], int]


# --- output ----------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return "" if value is None else value


def emit(args: argparse.Namespace, rows: Sequence[Any], columns: Sequence[str]) -> None:
    """Rows (dicts or dataclasses) as a table of ``columns``, or all of them as JSON lines."""
    dicts = [asdict(row) if is_dataclass(row) and not isinstance(row, type) else dict(row) for row in rows]
    if args.json:
        for row in dicts:
            print(json.dumps(row, default=str))
        return
    if not dicts:
        print("(none)")
        return
    cells = [[str(_plain(row.get(col)))[:90] for col in columns] for row in dicts]
    widths = [max(len(col), *(len(line[i]) for line in cells)) for i, col in enumerate(columns)]
    print("  ".join(col.ljust(widths[i]) for i, col in enumerate(columns)))
    print("  ".join("-" * w for w in widths))
    for line in cells:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)))


# --- commands --------------------------------------------------------------------------------------


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


def _shops(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from workers.budget import gate_for
    from workers.store.reports import shops

    rows = shops()
    for row in rows:
        # The shared budget mirror (Redis): points available of the bucket, and its refill.
        try:
            state = gate_for(row["shop"]).budget.state()
            row["budget"] = f"{state.available:.0f}/{state.maximum:.0f} +{state.restore_rate:g}/s"
        except RedisError:
            row["budget"] = "unknown (Redis away)"
    columns = ["shop", "status", "token_kind", "access_expires_at", "api_version", "missing_scopes",
               "budget", "unsynced", "pending", "waiting", "failed", "throttled_last_minute"]  # fmt: skip
    emit(args, rows, columns)
    return 0


def _returns(args: argparse.Namespace) -> int:
    from workers.store.reports import returns

    rows = returns(args.shop, args.sync, args.category, args.search)
    emit(args, rows, ["shop", "return_id", "order_id", "order", "state", "sync", "category", "detail"])
    return 0


def _inbox(args: argparse.Namespace) -> int:
    from workers.store import problems

    if args.action == "solve":
        done = problems.solve(args.id, by=getpass.getuser(), comment=args.comment)
        print("solved" if done else "no open problem with that id", file=sys.stdout if done else sys.stderr)
        return 0 if done else 1
    if args.action == "comment":
        done = problems.comment(args.id, args.comment or "")
        print("noted" if done else "no problem with that id", file=sys.stdout if done else sys.stderr)
        return 0 if done else 1
    rows = problems.listing(args.shop, args.category, include_solved=args.all, search=args.search)
    emit(args, rows, ["id", "shop", "order_name", "return_id", "category", "severity", "reason", "first_seen",
                      "last_seen", "occurrences", "solved_by", "comment"])  # fmt: skip
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from workers.diagnose import diagnose, diagnose_order

    found = diagnose_order(args.order) if args.order is not None else [diagnose(args.shop, args.return_id)]
    results = [d for d in found if d is not None]
    if not results:
        print("no such return", file=sys.stderr)
        return 1
    if args.json:
        emit(args, results, [])
        return 0
    for result in results:
        print(result.sentence)
        if result.repair:
            print(f"  repair: {result.repair}")
        for check in result.checks:
            mark = {True: "ok ", False: "NO ", None: "?  "}[check.ok]
            print(f"  {mark} {check.name}: {check.detail}")
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from workers.store.reports import order_of, timeline

    order_id = args.order if args.order is not None else order_of(args.shop, args.return_id)
    if order_id is None:
        print("no such return", file=sys.stderr)
        return 1
    emit(args, timeline(order_id), ["at", "kind", "return_id", "what", "detail"])
    return 0


def _repair(args: argparse.Namespace) -> int:
    from workers import repair

    if args.return_id is None and args.order is None and args.category is None:
        print("name a return, --order ORDER_ROW_ID or --category CATEGORY", file=sys.stderr)
        return 2
    act = repair.reset if args.command == "reset" else repair.retry
    count = act(args.shop, return_id=args.return_id, order_id=args.order, category=args.category)
    print(f"{count} event(s) back to work; the relay rings their orders")
    return 0


def _status(args: argparse.Namespace) -> int:
    from workers.store.inbox import return_status

    answer = return_status(args.shop, args.return_id)
    if answer is None:
        print("no event of that return was ever accepted", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2, default=str))
    return 0


def _install_link(args: argparse.Namespace) -> int:
    from workers.store.shops import install_link

    print(install_link(args.domain))
    return 0


def _data_requests(args: argparse.Namespace) -> int:
    from workers.store.privacy import data_requests

    emit(
        args,
        data_requests(),
        ["id", "shop_domain", "request_id", "orders_requested", "received_at", "sent_at"],
    )
    return 0


def _rotate_token_key(args: argparse.Namespace) -> int:
    from workers.store.shops import reencrypt_tokens

    print(f"{reencrypt_tokens()} shop(s) re-encrypted under the first TOKEN_ENCRYPTION_KEYS key")
    return 0


def _drift_mode(args: argparse.Namespace) -> int:
    from workers.store import drifts
    from workers.store.shops import find_shop

    shop = find_shop(args.domain)
    if shop is None:
        print(f"drift-mode: no shop {args.domain}", file=sys.stderr)
        return 1
    if args.mode:
        drifts.set_drift_mode(shop.id, drifts.DriftMode(args.mode))
    print(f"{args.domain}: drift mode {drifts.drift_mode(shop.id)}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    from workers import repair

    count = repair.replay(args.order_id)
    print(f"{count} event(s) of order {args.order_id} back to work (the relay rings it)")
    return 0


# --- the parser ------------------------------------------------------------------------------------


def _target(parser: argparse.ArgumentParser, *, order_only_ok: bool = True) -> None:
    parser.add_argument("shop", nargs="?" if order_only_ok else None, help="the shop domain")
    parser.add_argument("return_id", nargs="?", help="the platform's return id")
    parser.add_argument("--order", type=int, help="an order row id instead (every return of the order)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workers.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="JSON lines instead of a table")
        sub.set_defaults(func=handler)
        return sub

    sub = command("shops", _shops, "every shop: installation, scopes, API version, token, budget, backlog")
    sub = command("returns", _returns, "returns by shop, sync state and category")
    sub.add_argument("--shop")
    sub.add_argument("--sync", choices=[s.value for s in SyncState])
    sub.add_argument("--category", choices=[c.value for c in Category])
    sub.add_argument("--search", help="an order name or GID, or a return id")

    sub = command("inbox", _inbox, "the error inbox; `inbox solve ID --comment ...`, `inbox comment ID ...`")
    sub.add_argument("action", nargs="?", choices=["list", "solve", "comment"], default="list")
    sub.add_argument("id", nargs="?", type=int, help="the problem's id (solve, comment)")
    sub.add_argument("--comment")
    sub.add_argument("--shop")
    sub.add_argument("--category", choices=[c.value for c in Category])
    sub.add_argument("--search", help="an order name or GID, or a return id")
    sub.add_argument("--all", action="store_true", help="solved problems too")

    sub = command(
        "diagnose", _diagnose, "why a return (or every return of an order) is not synced, and the repair"
    )
    _target(sub)
    sub = command(
        "timeline", _timeline, "every event, state change, run and Shopify call of a return's order"
    )
    _target(sub)
    for name, text in (
        ("retry", "retry the failed step of a return, an order's returns, or a category of a shop"),
        ("reset", "replay a return (an order's returns, a category of a shop) from its stored events"),
    ):
        sub = command(name, _repair, text)
        sub.add_argument("shop")
        sub.add_argument("return_id", nargs="?")
        sub.add_argument("--order", type=int, help="every return of this order row")
        sub.add_argument(
            "--category", choices=[c.value for c in Category], help="every return of the category"
        )

    sub = command("status", _status, "where a return stands (the status API's answer)")
    sub.add_argument("shop")
    sub.add_argument("return_id")
    sub = command("replay", _replay, "put an order's failed or waiting events back to work (= retry --order)")
    sub.add_argument("order_id", type=int)

    sub = command("register-shop", _register_shop, "add a shop with a static token read from stdin")
    sub.add_argument("domain")
    sub.add_argument(
        "--client-credentials",
        action="store_true",
        help="our own store: get a token with the app's credentials",
    )
    sub.add_argument("--api-url", help="URL template with {shop} and {version}; default: Shopify's")
    sub.add_argument("--api-version", help="default: SHOPIFY_API_VERSION (2026-07)")
    sub.add_argument("--language", choices=["en", "nl"], default="en", help="refund-method tag language")
    sub.add_argument("--reason-override", action="append", metavar="REASON_ID=HANDLE")
    sub = command("install-link", _install_link, "where a merchant installs (or reinstalls) the app")
    sub.add_argument("domain")
    command("data-requests", _data_requests, "customers/data_request reports, for an operator to send on")
    sub = command(
        "drift-mode", _drift_mode, "what the drift check does for a shop: report differences, or repair them"
    )
    sub.add_argument("domain")
    sub.add_argument("mode", nargs="?", choices=["report", "repair"], help="set it (default: show it)")
    command("rotate-token-key", _rotate_token_key, "re-encrypt stored tokens under the first key")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    require_safe(get_settings(), "cli")
    # Warnings and errors only: the command's own output is on stdout, its log lines on stderr.
    log_config.configure("cli", "WARNING")
    if args.command in ("diagnose", "timeline") and args.order is None and not (args.shop and args.return_id):
        print(f"{args.command}: name SHOP RETURN_ID, or --order ORDER_ROW_ID", file=sys.stderr)
        return 2
    handler: Handler = args.func
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
