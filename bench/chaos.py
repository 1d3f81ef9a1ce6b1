"""Chaos run: the whole system under a producer's worst habits and a machine's worst moments.

``make chaos`` (= ``python -m bench.chaos``) generates return lifecycles over many orders in
several shops, delivers their events duplicated, reordered and late, and meanwhile kill -9s
workers, flushes Redis and restarts Postgres, while the Shopify stand-in answers with 5xx, hangs,
loses responses of applied mutations and throttles. Then it waits (bounded) for the system to
converge and checks every order on the stand-in against ``bench.expected`` and every return
against the status API. Exit status 1 on any lost event, duplicate Shopify return or wrong order.

Everything random is drawn from ``--seed``, so a failing run can be replayed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.expected import compare, compare_order, expected_orders, summarize
from bench.harness import HarnessError, System

RESULTS = Path(__file__).resolve().parent / "results"

# Lifecycles a return can go through, with their weights. Never completed *and* cancelled: that
# is a conflict whose outcome depends on ordering (tested elsewhere), not a convergence question.
PATHS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("requested", "created", "completed"), 0.35),
    (("created", "completed"), 0.30),
    (("requested", "created"), 0.05),
    (("created",), 0.05),
    (("requested",), 0.05),
    (("requested", "cancelled"), 0.10),
    (("created", "cancelled"), 0.10),
)
METHODS = ("exchange", "refund", "store_credit")
ORIGINS = ("return_portal", "return_portal_no_outbound", "manual_order_return", "label_in_the_box")
ORDER_ID_BASE = 7_000_000_000_000  # far from the stand-in's own id range (1e11-2e11)
LINE_ID_BASE = 8_000_000_000_000
LINES_PER_ORDER = 6


@dataclass
class ChaosParams:
    events: int = 5000
    orders: int = 500
    shops: int = 3
    seed: int = 1
    duration: float = 60.0  # seconds over which the events are delivered
    duplicates: float = 0.10
    late: float = 0.05
    # Four worker nodes (processes with names of their own, the gevent pool as the Procfile runs
    # it) reaching Postgres through PgBouncer in transaction pooling, as machines sharing one
    # Postgres would (README "Deployment").
    workers: int = 4
    concurrency: int = 8
    pgbouncer: bool = True
    kill_every: float = 5.0  # a worker kill -9 every this many seconds while delivering
    flush_redis: bool = True
    restart_postgres: bool = True
    error_rate: float = 0.05
    hang_rate: float = 0.02
    lost_response_rate: float = 0.01
    bucket_size: int = 1000  # small (Shopify's is 2000 and up): throttling is part of the run
    restore_rate: int = 200
    senders: int = 8
    # The app's life: access tokens that expire (and are refreshed) many times over the run, and
    # one shop uninstalled in the middle of it and reinstalled a few seconds later.
    token_ttl_s: float = 15.0
    uninstall_reinstall: bool = True
    converge_timeout: float = 600.0
    name: str = "chaos"
    out: str = str(RESULTS / "chaos.json")


@dataclass
class OrderSpec:
    shop: str
    num: int
    name: str
    lines: list[dict[str, Any]]
    by_name_only: bool


@dataclass
class Scenario:
    shops: list[str]
    orders: list[OrderSpec]
    events: list[dict[str, Any]]  # unique events
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # send order, with duplicates


def _event(
    event_id: str, state: str, occurred: datetime, order: OrderSpec, ret: dict[str, Any]
) -> dict[str, Any]:
    order_ref: dict[str, Any] = {"name": order.name}
    if not order.by_name_only:
        order_ref["id"] = f"gid://shopify/Order/{order.num}"
    body: dict[str, Any] = {
        "id": ret["id"],
        "order": order_ref,
        "origin": ret["origin"],
        "refund_method": ret["refund_method"],
        "items": ret["items"],
    }
    if ret.get("exchange_note"):
        body["exchange_note"] = ret["exchange_note"]
    if ret.get("tracking") and state != "requested":
        body["tracking"] = {"number": ret["tracking"], "carrier": "postnl"}
    return {
        "id": event_id,
        "type": f"return.{state}",
        "occurred_at": occurred.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "shop": order.shop,
        "return": body,
    }


def generate(params: ChaosParams) -> Scenario:
    """Orders, return lifecycles and the delivery sequence, all from ``params.seed``."""
    rng = random.Random(params.seed)
    shops = [f"chaos{i}-{params.name.replace('_', '-')}.myshopify.com" for i in range(params.shops)]
    orders: list[OrderSpec] = []
    for k in range(params.orders):
        num = ORDER_ID_BASE + params.seed * 100_000 + k
        lines = [
            {
                "id": LINE_ID_BASE + (params.seed * 100_000 + k) * 10 + j,
                "quantity": rng.randint(1, 3),
                "title": f"Item {j}",
            }
            for j in range(LINES_PER_ORDER)
        ]
        orders.append(
            OrderSpec(shops[k % len(shops)], num, f"#{10_000 + k}", lines, by_name_only=rng.random() < 0.10)
        )

    target_unique = params.events - round(params.events * params.duplicates)
    free_lines = {o.num: list(range(LINES_PER_ORDER)) for o in orders}
    events: list[dict[str, Any]] = []
    slots: list[tuple[float, dict[str, Any]]] = []  # (delivery time in [0, 1+], event)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    n_return = 0
    while len(events) < target_unique:
        open_orders = [o for o in orders if free_lines[o.num]]
        if not open_orders:
            break  # every line item of every order is in a return already
        order = open_orders[n_return % len(open_orders)]
        take = min(len(free_lines[order.num]), rng.choice((1, 1, 2)))
        picked = [free_lines[order.num].pop(0) for _ in range(take)]
        path = rng.choices([p for p, _ in PATHS], weights=[w for _, w in PATHS])[0]
        method = rng.choice(METHODS)
        ret_id = f"R-{params.seed}-{n_return:06d}"
        ret = {
            "id": ret_id,
            "origin": "return_portal_request" if path[0] == "requested" else rng.choice(ORIGINS),
            "refund_method": method,
            # Unique text per return, so the check can count its occurrences in the order note.
            "exchange_note": f"Ruilen {ret_id}: graag maat M" if method == "exchange" else None,
            "tracking": f"3SCHAOS{params.seed}{n_return:07d}" if rng.random() < 0.8 else None,
            "items": [
                {
                    "line_item_id": f"gid://shopify/LineItem/{order.lines[j]['id']}",
                    "quantity": rng.randint(1, order.lines[j]["quantity"]),
                    "reason_id": rng.randint(1, 35),
                    "reason": "Past niet",
                }
                for j in picked
            ],
        }
        started = base + timedelta(minutes=n_return)
        when = rng.random()  # the return's place in the delivery period
        for step, state in enumerate(path):
            event = _event(
                f"evt_{params.seed}_{n_return:06d}_{state}",
                state,
                started + timedelta(hours=step),
                order,
                ret,
            )
            events.append(event)
            # Neighbours get reordered; some events come much later than their successors.
            t = when + 0.02 * step + rng.gauss(0, 0.03)
            if rng.random() < params.late:
                t += rng.uniform(0.2, 0.6)
            slots.append((t, event))
        n_return += 1

    for _ in range(max(0, params.events - len(events))):
        t, event = rng.choice(slots[: len(events)])
        slots.append((t + rng.uniform(0, 0.3), event))  # a re-delivery of the same event
    slots.sort(key=lambda s: s[0])
    return Scenario(shops, orders, events, [event for _, event in slots])


class FaultLog:
    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.entries: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def add(self, kind: str, **detail: Any) -> None:
        with self.lock:
            self.entries.append({"t": round(time.monotonic() - self.t0, 2), "kind": kind, **detail})

    @property
    def last_t(self) -> float:
        return max((e["t"] for e in self.entries), default=0.0)


def _fault_schedule(params: ChaosParams) -> list[tuple[float, str]]:
    schedule: list[tuple[float, str]] = []
    if params.kill_every > 0:
        t = params.kill_every / 2
        while t < params.duration:
            schedule.append((t, "kill_worker"))
            t += params.kill_every
    if params.flush_redis:
        schedule.append((params.duration * 0.4, "flush_redis"))
    if params.restart_postgres:
        schedule.append((params.duration * 0.6, "restart_postgres"))
    if params.uninstall_reinstall:
        schedule.append((params.duration * 0.3, "uninstall"))
        schedule.append((params.duration * 0.3 + min(8.0, params.duration * 0.15), "reinstall"))
    return sorted(schedule)


def _run_faults(
    system: System, params: ChaosParams, log: FaultLog, stop: threading.Event, uninstalled: str
) -> None:
    for at, kind in _fault_schedule(params):
        if stop.wait(max(0.0, log.t0 + at - time.monotonic())):
            return
        try:
            if kind == "kill_worker":
                pid = system.kill_random_worker()
                new = system.start_worker(wait=False)  # the orchestrator replaces a dead container
                log.add(kind, killed=pid, replacement=new)
            elif kind == "flush_redis":
                system.flush_redis()
                log.add(kind)
            elif kind == "restart_postgres":
                down = System.restart_postgres()
                log.add(kind, took_s=round(down, 2))
            elif kind == "uninstall":
                system.uninstall(uninstalled)
                log.add(kind, shop=uninstalled)
            elif kind == "reinstall":
                system.install(uninstalled)
                log.add(kind, shop=uninstalled)
        except Exception as error:  # noqa: BLE001 - a failed fault is reported, not fatal
            log.add(kind, error=repr(error))


def _deliver(system: System, scenario: Scenario, params: ChaosParams, t0: float) -> dict[str, list[int]]:
    """Send every delivery at its slot in [0, duration]; returns event id -> HTTP statuses."""
    results: dict[str, list[int]] = {}
    lock = threading.Lock()
    gap = params.duration / max(1, len(scenario.deliveries))

    def send(event: dict[str, Any]) -> None:
        status = system.send(event)
        with lock:
            results.setdefault(event["id"], []).append(status)

    with ThreadPoolExecutor(max_workers=params.senders, thread_name_prefix="sender") as pool:
        for i, event in enumerate(scenario.deliveries):
            delay = t0 + i * gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, event)
    return results


def _check_status_api(
    system: System, accepted: dict[str, dict[str, Any]], expected: dict[Any, Any], timeout_s: float
) -> dict[str, Any]:
    """Every accepted event must be known to its return, every return synced at its final state."""
    by_return: dict[tuple[str, str], list[str]] = {}
    for event in accepted.values():
        by_return.setdefault((event["shop"], event["return"]["id"]), []).append(event["id"])
    finals = {(r.shop, r.return_id): r.final for o in expected.values() for r in o.returns}
    problems: dict[tuple[str, str], str] = {}
    lost: set[str] = set()

    def check(key: tuple[str, str]) -> tuple[tuple[str, str], str | None, set[str]]:
        answer = system.status(*key)
        ids = by_return[key]
        if answer is None:
            return key, "unknown to the status API", set(ids)
        listed = {e["id"]: e.get("status") for e in answer.get("events", [])}
        missing = {i for i in ids if i not in listed}
        open_ = sorted(
            f"{i}={listed[i]}" for i in ids if i in listed and listed[i] not in ("applied", "superseded")
        )
        final = finals[key]
        if missing:
            return key, f"events not listed: {sorted(missing)}", missing
        if answer.get("sync") != "synced" or answer.get("state") != final or open_:
            return (
                key,
                (
                    f"state={answer.get('state')} sync={answer.get('sync')} "
                    f"detail={answer.get('detail')} expected {final}; unfinished {open_}"
                ),
                set(),
            )
        return key, None, set()

    pending = list(by_return)
    deadline = time.monotonic() + timeout_s
    while pending:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(pool.map(check, pending))
        problems = {key: why for key, why, _ in outcomes if why}
        lost = {i for _, _, missing in outcomes for i in missing}
        pending = [key for key, why, _ in outcomes if why]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(2)  # the database may trail Shopify by one commit: look again, bounded
    return {
        "returns_checked": len(by_return),
        "returns_not_ok": len(problems),
        "lost_events": sorted(lost),
        "problems": [f"{shop} {rid}: {why}" for (shop, rid), why in sorted(problems.items())][:50],
    }


def _evidence(
    system: System, expected: dict[Any, Any], states: dict[str, dict[str, Any]], limit: int = 5
) -> list[dict[str, Any]]:
    """For the first wrong orders: what returnsync recorded and what the stand-in saw, taken
    before the run's database is dropped, so a failure can be explained afterwards."""
    out: list[dict[str, Any]] = []
    for order in expected.values():
        diffs = compare_order(order, states[order.shop])
        if not diffs:
            continue
        view = states[order.shop]
        shop_order = next(
            (
                o
                for o in view["orders"]
                if (order.order_num is not None and o["id"].endswith(f"/{order.order_num}"))
                or o["name"].lstrip("#").lower() == order.order_name
            ),
            None,
        )
        gids = [shop_order["id"], *shop_order["returns"]] if shop_order else []
        try:
            rows = system.query(
                "SELECT id FROM orders WHERE order_gid = ANY(%s) OR order_ref = ANY(%s)"
                " OR lower(order_name) = %s",
                (gids, gids, f"#{order.order_name}"),
            )
            ids = [r["id"] for r in rows]
            db = {
                table: system.query(f"SELECT * FROM {table} WHERE order_id = ANY(%s) ORDER BY id", (ids,))
                for table in ("returns", "events", "attempts", "shopify_calls")
            }
        except Exception as error:  # noqa: BLE001 - evidence is best effort
            db = {"error": repr(error)}
        calls = [
            c
            for c in system.standin.calls(order.shop)
            if any(g in json.dumps(c.get("variables")) for g in gids)
        ]
        out.append(
            {
                "order": order.order_num or order.order_name,
                "differences": diffs,
                "standin_order": shop_order,
                "standin_returns": [r for r in view["returns"] if r["id"] in gids],
                "standin_calls": calls,
                "returnsync": db,
            }
        )
        if len(out) >= limit:
            break
    return out


def _stragglers(
    system: System, expected: dict[Any, Any], states: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The last few orders to converge, with their runs (outcome, detail, seconds since the
    first), so a long tail after the last fault says what it waited on."""
    out = []
    for evidence in _evidence(system, expected, states, limit=3):
        attempts = (
            evidence["returnsync"].get("attempts", []) if isinstance(evidence["returnsync"], dict) else []
        )
        first = attempts[0]["started_at"] if attempts else None
        out.append(
            {
                "order": evidence["order"],
                "differences": evidence["differences"],
                "runs": [
                    (round((a["started_at"] - first).total_seconds(), 1), a["outcome"], a["detail"])
                    for a in attempts[-20:]
                ],
                "returns": [
                    (r["platform_return_id"], r["sync"], r["detail"])
                    for r in evidence["returnsync"].get("returns", [])
                ]
                if isinstance(evidence["returnsync"], dict)
                else [],
            }
        )
    return out


def run(params: ChaosParams) -> dict[str, Any]:
    """One chaos run; returns (and writes to ``params.out``) the report."""
    scenario = generate(params)
    env = {
        # The sweep is what brings back work whose doorbell died with a worker or with Redis.
        "SWEEP_AFTER_S": "5",
        "SWEEP_INTERVAL_S": "2",
        # Hung Shopify calls must cost seconds, not the production 20 s, for the run to finish.
        "SHOPIFY_READ_TIMEOUT_S": "3",
        "SHOPIFY_CONNECT_TIMEOUT_S": "2",
        # Orders a killed worker held are taken over once its lease expires: the shortest TTL
        # these timeouts allow (2 * (2 + 3) s).
        "ORDER_LEASE_TTL_S": "10",
        "SHOPIFY_BACKOFF_BASE_S": "0.2",
        "SHOPIFY_BACKOFF_CAP_S": "5",
        "ORDER_LOCK_RETRY_S": "0.5",
        "WAITING_RETRY_S": "5",
        "TASK_DEADLINE_S": "60",
        "LOG_LEVEL": "WARNING",
    }
    report: dict[str, Any] = {"params": asdict(params), "ok": False}
    with System(
        params.name,
        workers=params.workers,
        concurrency=params.concurrency,
        env=env,
        app_token_ttl_s=params.token_ttl_s,
        pgbouncer=params.pgbouncer,
    ) as system:
        for shop in scenario.shops:
            system.add_shop(shop, bucket_size=params.bucket_size, restore_rate=params.restore_rate)
        for order in scenario.orders:
            system.standin.create_order(order.shop, order.name, order.lines, order_id=order.num)
        for i, shop in enumerate(scenario.shops):
            system.standin.set_faults(
                shop,
                error_rate=params.error_rate,
                hang_rate=params.hang_rate,
                lost_response_rate=params.lost_response_rate,
                seed=params.seed * 100 + i,
            )

        t0 = time.monotonic()
        faults = FaultLog(t0)
        stop = threading.Event()
        fault_thread = threading.Thread(
            target=_run_faults,
            args=(system, params, faults, stop, scenario.shops[0]),
            name="faults",
            daemon=True,
        )
        fault_thread.start()
        try:
            results = _deliver(system, scenario, params, t0)
        finally:
            fault_thread.join(timeout=params.duration + 120)
            stop.set()
        delivered_at = time.monotonic() - t0

        unique = {e["id"]: e for e in scenario.events}
        accepted = {i: unique[i] for i, codes in results.items() if any(c in (200, 202) for c in codes)}
        refused = {i: codes for i, codes in results.items() if i not in accepted}
        expected = expected_orders(list(accepted.values()))

        # Converged: every order on the stand-in as expected. Polled, bounded by converge_timeout.
        deadline = time.monotonic() + params.converge_timeout
        diffs: list[str] = []
        converged_at: float | None = None
        progress: list[tuple[float, int]] = []  # (seconds since start, orders still wrong)
        stragglers: list[dict[str, Any]] = []  # the last orders to converge, as last seen wrong
        while True:
            states = {shop: system.standin.state(shop) for shop in scenario.shops}
            diffs = compare(expected, states)
            wrong = summarize(diffs)["orders_wrong"]
            progress.append((round(time.monotonic() - t0, 1), wrong))
            if 0 < wrong <= 3:
                stragglers = _stragglers(system, expected, states)
            if not diffs:
                converged_at = time.monotonic() - t0
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(2)

        status = _check_status_api(system, accepted, expected, timeout_s=30 if converged_at else 5)
        calls = [c for shop in scenario.shops for c in system.standin.calls(shop)]
        summary = summarize(diffs)
        report.update(
            {
                "events_delivered": len(scenario.deliveries),
                "events_unique": len(scenario.events),
                "events_accepted": len(accepted),
                "events_refused": {i: c for i, c in list(refused.items())[:50]},
                "returns": sum(len(o.returns) for o in expected.values()),
                "orders": len(expected),
                "delivery_s": round(delivered_at, 1),
                "faults": faults.entries,
                "pgbouncer_transactions": system.bouncer_transactions(),
                "standin_calls": len(calls),
                "standin_throttled": sum(1 for c in calls if c.get("throttled")),
                "standin_faults": sum(1 for c in calls if c.get("fault")),
                "standin_cost_points": sum(int(c.get("cost") or 0) for c in calls if not c.get("throttled")),
                "orders_wrong_over_time": progress[:: max(1, len(progress) // 40)] + progress[-1:],
                "stragglers": stragglers,
                "converged": converged_at is not None,
                "converged_s_after_last_fault": (
                    round(converged_at - faults.last_t, 1) if converged_at is not None else None
                ),
                "converged_s_after_last_delivery": (
                    round(converged_at - delivered_at, 1) if converged_at is not None else None
                ),
                "lost_events": len(status["lost_events"]),
                "duplicate_returns": summary["duplicate_returns"],
                "missing_returns": summary["missing_returns"],
                "orders_wrong": summary["orders_wrong"],
                "returns_not_synced": status["returns_not_ok"],
                "differences": diffs[:100],
                "status_problems": status["problems"],
                "lost_event_ids": status["lost_events"][:100],
                "logs": str(system.log_dir),
            }
        )
        report["ok"] = bool(
            report["converged"]
            and not refused
            and report["lost_events"] == 0
            and report["duplicate_returns"] == 0
            and report["orders_wrong"] == 0
            and report["returns_not_synced"] == 0
        )
        if report["ok"]:
            system.remove_logs()
        else:
            report["evidence"] = _evidence(system, expected, states)
    out = Path(params.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    defaults = ChaosParams()
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=defaults.events)
    parser.add_argument("--orders", type=int, default=defaults.orders)
    parser.add_argument("--shops", type=int, default=defaults.shops)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--duration", type=float, default=defaults.duration, help="seconds over which events are delivered"
    )
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument(
        "--kill-every",
        type=float,
        default=defaults.kill_every,
        help="seconds between worker kill -9s (0: none)",
    )
    parser.add_argument("--no-pgbouncer", action="store_true", help="workers reach Postgres directly")
    parser.add_argument("--no-redis-flush", action="store_true")
    parser.add_argument("--no-postgres-restart", action="store_true")
    parser.add_argument("--no-standin-faults", action="store_true")
    parser.add_argument("--bucket-size", type=int, default=defaults.bucket_size)
    parser.add_argument("--restore-rate", type=int, default=defaults.restore_rate)
    parser.add_argument("--converge-timeout", type=float, default=defaults.converge_timeout)
    parser.add_argument("--out", default=defaults.out)
    args = parser.parse_args(argv)
    faults_on = not args.no_standin_faults
    params = ChaosParams(
        events=args.events,
        orders=args.orders,
        shops=args.shops,
        seed=args.seed,
        duration=args.duration,
        workers=args.workers,
        concurrency=args.concurrency,
        pgbouncer=not args.no_pgbouncer,
        kill_every=args.kill_every,
        flush_redis=not args.no_redis_flush,
        restart_postgres=not args.no_postgres_restart,
        error_rate=defaults.error_rate if faults_on else 0.0,
        hang_rate=defaults.hang_rate if faults_on else 0.0,
        lost_response_rate=defaults.lost_response_rate if faults_on else 0.0,
        bucket_size=args.bucket_size,
        restore_rate=args.restore_rate,
        converge_timeout=args.converge_timeout,
        out=args.out,
    )
    try:
        report = run(params)
    except HarnessError as error:
        print(f"chaos: the system could not be run: {error}", file=sys.stderr)
        return 2
    keys = (
        "events_delivered",
        "events_accepted",
        "returns",
        "orders",
        "standin_calls",
        "standin_throttled",
        "standin_faults",
        "converged",
        "converged_s_after_last_fault",
        "lost_events",
        "duplicate_returns",
        "orders_wrong",
        "returns_not_synced",
    )
    for key in keys:
        print(f"{key:32} {report[key]}")
    for line in report["differences"][:20] + report["status_problems"][:20]:
        print("  " + line)
    print(f"report: {params.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
