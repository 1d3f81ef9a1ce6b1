"""Pipeline benchmarks (issue items 2-5), each against a real local system (bench.harness).

2. ``latency``     accepted -> applied latency, p50/p99, at a steady offered load, with the
                   stand-in answering at once and with 50 ms added per call; their ratio.
3. ``calls``       Shopify calls and cost points per lifecycle, from the stand-in's call log,
                   next to the fewest calls the Admin API allows for the same effect.
4. ``throughput``  lifecycles per second with 1, 2 and 4 worker processes (concurrency 1) and
                   one worker at concurrency 8; stand-in at 100 ms per call, bucket never empty.
5. ``saturation``  one shop with a small rate limit kept saturated: share of its restore rate
                   the sync actually used, and the THROTTLED answers it provoked.

Each function takes a running ``System`` and returns a dict of figures; ``run_all`` starts one
system and runs them in an order where a backlog left by one cannot slow the next. Every wait is
bounded; a benchmark that runs out of time reports what it saw with ``"complete": False``.
"""

from __future__ import annotations

import itertools
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import System, wait_until

ORDER_BASE = 6_000_000_000_000  # order ids of the benchmarks; line ids are derived from them
_ids = itertools.count(1)
BIG_BUCKET = {"bucket_size": 1_000_000, "restore_rate": 1_000_000}  # rate limit out of the picture


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _shop(system: System, label: str, **limits: int) -> str:
    domain = f"bench-{label}-{next(_ids)}.myshopify.com"
    system.add_shop(domain, **(limits or BIG_BUCKET))
    return domain


def _orders(system: System, shop: str, count: int) -> list[tuple[int, str, int]]:
    """``count`` fulfilled one-line orders on the stand-in: (order number, name, line item number)."""
    made = []
    for _ in range(count):
        seq = next(_ids)
        num, line = ORDER_BASE + seq, ORDER_BASE + 500_000_000 + seq
        system.standin.create_order(
            shop, f"#B{seq}", [{"id": line, "quantity": 1, "title": "Shirt"}], order_id=num
        )
        made.append((num, f"#B{seq}", line))
    return made


def _event(shop: str, order: tuple[int, str, int], state: str, method: str = "refund") -> dict[str, Any]:
    num, name, line = order
    body: dict[str, Any] = {
        "id": f"R-{num}",
        "order": {"id": f"gid://shopify/Order/{num}", "name": name},
        "origin": "return_portal",
        "refund_method": method,
        "items": [
            {
                "line_item_id": f"gid://shopify/LineItem/{line}",
                "quantity": 1,
                "reason_id": 7,
                "reason": "Te klein",
            }
        ],
    }
    if state != "requested":
        body["tracking"] = {"number": f"3SBENCH{num}", "carrier": "postnl"}
    if method == "exchange":
        body["exchange_note"] = f"Ruilen R-{num}: maat M"
    return {
        "id": f"evt_{num}_{state}",
        "type": f"return.{state}",
        "occurred_at": "2026-11-29T10:00:00Z",
        "shop": shop,
        "return": body,
    }


def _wait_events_final(system: System, event_ids: list[str], timeout_s: float) -> bool:
    """True once every event is out of accepted/waiting (applied, superseded or worse)."""

    def done() -> bool:
        rows = system.query(
            "SELECT count(*) AS n FROM events WHERE event_id = ANY(%s)"
            " AND status NOT IN ('accepted', 'waiting')",
            (event_ids,),
        )
        return rows[0]["n"] >= len(event_ids)

    try:
        wait_until(done, timeout_s, interval_s=0.25, what="events to be applied")
        return True
    except Exception:  # noqa: BLE001 - a timeout is a result here, reported as incomplete
        return False


def _send_paced(
    system: System, events: list[dict[str, Any]], rate_per_s: float, senders: int = 8
) -> list[int]:
    """Open-loop load: event i leaves at i / rate whatever the answers before it."""
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=senders) as pool:
        futures = []
        for i, event in enumerate(events):
            delay = start + i / rate_per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(system.send, event))
        return [f.result() for f in futures]


# --- 2. latency ---


def latency(
    system: System,
    rate_per_s: float = 4.0,
    duration_s: float = 15.0,
    added_latency_ms: tuple[int, ...] = (0, 50),
) -> dict[str, Any]:
    """accepted -> applied for `return.created` events (one Shopify lifecycle step each), from the
    database's own clock: events.received_at (the 202) to events.finished_at (applied)."""
    result: dict[str, Any] = {"offered_per_s": rate_per_s, "duration_s": duration_s, "runs": {}}
    for added in added_latency_ms:
        shop = _shop(system, f"lat{added}")
        system.standin.set_faults(shop, latency_ms=added)
        count = max(1, int(rate_per_s * duration_s))
        events = [_event(shop, order, "created") for order in _orders(system, shop, count)]
        statuses = _send_paced(system, events, rate_per_s)
        ids = [e["id"] for e in events]
        complete = _wait_events_final(system, ids, timeout_s=60 + duration_s)
        rows = system.query(
            "SELECT EXTRACT(EPOCH FROM finished_at - received_at) AS s FROM events"
            " WHERE event_id = ANY(%s) AND status = 'applied' AND finished_at IS NOT NULL",
            (ids,),
        )
        seconds = [float(r["s"]) for r in rows]
        calls = system.standin.calls(shop)
        result["runs"][f"{added}ms"] = {
            "events": count,
            "accepted": sum(1 for s in statuses if s == 202),
            "applied": len(seconds),
            "complete": complete,
            "p50_ms": round(1000 * _percentile(seconds, 50), 1) if seconds else None,
            "p99_ms": round(1000 * _percentile(seconds, 99), 1) if seconds else None,
            "mean_ms": round(1000 * statistics.fmean(seconds), 1) if seconds else None,
            "shopify_calls_per_event": round(len(calls) / count, 2),
        }
    runs = result["runs"]
    if runs.get("0ms", {}).get("p50_ms") and runs.get("50ms", {}).get("p50_ms"):
        result["p50_ratio_50ms_vs_0ms"] = round(runs["50ms"]["p50_ms"] / runs["0ms"]["p50_ms"], 2)
        result["p99_ratio_50ms_vs_0ms"] = round(runs["50ms"]["p99_ms"] / runs["0ms"]["p99_ms"], 2)
    return result


# --- 3. calls per lifecycle ---

# The fewest Admin API calls that produce PRODUCT.md §2's effects for a `refund` return with a
# tracking number, when the sync knows the order GID (the events carry it):
# - one query for the order's returnable fulfillment line items (returnableFulfillments),
# - one mutation per transition: returnRequest / returnApproveRequest or returnCreate /
#   returnClose; the approve/create payload can select the reverse fulfillment order's line
#   items, so attaching tracking needs no extra read,
# - reverseDeliveryCreateWithShipping (tracking) and tagsAdd (refund-method tag).
# The access-scope check is once per shop, not per lifecycle, and is left out (warm-up absorbs it).
MINIMUM_CALLS: dict[str, dict[str, int]] = {
    "requested>created>completed": {"queries": 1, "mutations": 5},  # request, approve, delivery, tag, close
    "created>completed": {"queries": 1, "mutations": 4},  # create, delivery, tag, close
}
# The stand-in charges 10 points per mutation and at least 1 per query (standin/throttle.py), so
# this is the cost floor of the minimum call list under its cost model.
MUTATION_COST, QUERY_FLOOR = 10, 1


def _synced(system: System, shop: str, return_id: str, state: str, timeout_s: float) -> bool:
    def done() -> bool:
        answer = system.status(shop, return_id)
        return bool(answer and answer.get("state") == state and answer.get("sync") == "synced")

    try:
        wait_until(done, timeout_s, interval_s=0.1, what=f"{return_id} at {state}")
        return True
    except Exception:  # noqa: BLE001
        return False


def calls_per_lifecycle(system: System, repeats: int = 5) -> dict[str, Any]:
    """Run each lifecycle `repeats` times, one event at a time (each applied before the next, as
    in real life where days pass between them), and count the stand-in's calls per lifecycle."""
    shop = _shop(system, "calls")
    warm = _orders(system, shop, 1)[0]
    system.send(_event(shop, warm, "created"))
    _synced(system, shop, f"R-{warm[0]}", "created", 60)
    result: dict[str, Any] = {"repeats": repeats, "lifecycles": {}}
    for name, minimum in MINIMUM_CALLS.items():
        path = name.split(">")
        counts: list[int] = []
        costs: list[int] = []
        operations: dict[str, int] = {}
        complete = True
        for order in _orders(system, shop, repeats):
            before = len(system.standin.calls(shop))
            for state in path:
                system.send(_event(shop, order, state))
                complete &= _synced(system, shop, f"R-{order[0]}", state, 60)
            new = system.standin.calls(shop)[before:]
            counts.append(len(new))
            costs.append(sum(int(c.get("cost") or 0) for c in new if not c.get("throttled")))
            for call in new:
                key = str(call.get("operation"))
                operations[key] = operations.get(key, 0) + 1
        floor_calls = minimum["queries"] + minimum["mutations"]
        floor_cost = minimum["queries"] * QUERY_FLOOR + minimum["mutations"] * MUTATION_COST
        result["lifecycles"][name] = {
            "complete": complete,
            "calls": round(statistics.fmean(counts), 2),
            "calls_max": max(counts),
            "cost": round(statistics.fmean(costs), 1),
            "minimum_calls": floor_calls,
            "minimum_cost_floor": floor_cost,
            "calls_vs_minimum": round(statistics.fmean(counts) / floor_calls, 2),
            "operations_per_lifecycle": {k: round(v / repeats, 2) for k, v in sorted(operations.items())},
        }
    return result


# --- 4. throughput ---


def throughput(
    system: System,
    configs: tuple[tuple[int, int], ...] = ((1, 1), (2, 1), (4, 1), (1, 8)),
    added_latency_ms: int = 100,
    per_slot: int = 10,
    cap: int = 80,
    timeout_s: float = 90.0,
) -> dict[str, Any]:
    """created+completed lifecycles per second for each (worker processes, concurrency)."""
    result: dict[str, Any] = {"standin_latency_ms": added_latency_ms, "runs": {}}
    for processes, concurrency in configs:
        system.set_workers(processes, concurrency)
        shop = _shop(system, f"tp{processes}x{concurrency}")
        system.standin.set_faults(shop, latency_ms=added_latency_ms)
        count = min(cap, per_slot * processes * concurrency)
        orders = _orders(system, shop, count)
        events = [_event(shop, o, s) for o in orders for s in ("created", "completed")]
        start = time.monotonic()
        _send_paced(system, events, rate_per_s=1000.0)  # as fast as the senders go
        complete = _wait_events_final(system, [e["id"] for e in events], timeout_s)
        elapsed = time.monotonic() - start
        closed = sum(1 for r in system.standin.state(shop)["returns"] if r["status"] == "CLOSED")
        result["runs"][f"{processes}x{concurrency}"] = {
            "processes": processes,
            "concurrency": concurrency,
            "lifecycles": count,
            "closed": closed,
            "complete": complete,
            "seconds": round(elapsed, 2),
            "lifecycles_per_s": round(closed / elapsed, 2),
        }
    base = result["runs"].get("1x1", {}).get("lifecycles_per_s")
    if base:
        for run in result["runs"].values():
            run["speedup_vs_1x1"] = round(run["lifecycles_per_s"] / base, 2)
    return result


# --- 5. saturation ---


def saturation(
    system: System,
    bucket_size: int = 1000,
    restore_rate: int = 100,
    lifecycles: int = 80,
    window_s: float = 30.0,
    max_wait_s: float = 30.0,
) -> dict[str, Any]:
    """Keep one shop saturated and measure, over `window_s` seconds starting at its first
    THROTTLED answer (the bucket is empty then), the points spent against what refilled.
    Restore rate 100/s is the lowest plan PRODUCT.md names; the bucket is kept at least as large
    as Shopify's largest single-query cost (1,000), as on every real plan."""
    shop = _shop(system, "sat", bucket_size=bucket_size, restore_rate=restore_rate)
    orders = _orders(system, shop, lifecycles)
    events = [_event(shop, o, s) for o in orders for s in ("created", "completed")]
    started = time.time()
    _send_paced(system, events, rate_per_s=1000.0)

    def first_throttle() -> float | None:
        return next((c["at"] for c in system.standin.calls(shop) if c.get("throttled")), None)

    try:
        t_start = float(wait_until(first_throttle, max_wait_s, interval_s=0.5, what="a THROTTLED answer"))
    except Exception:  # noqa: BLE001 - the load did not saturate the shop: say so
        return {"saturated": False, "bucket_size": bucket_size, "restore_rate": restore_rate}
    time.sleep(max(0.0, t_start + window_s - time.time()))
    calls = [c for c in system.standin.calls(shop) if t_start <= c["at"] < t_start + window_s]
    used = sum(int(c.get("cost") or 0) for c in calls if not c.get("throttled") and c.get("status") == 200)
    throttled = sum(1 for c in calls if c.get("throttled"))
    # The backlog is left behind on purpose: this runs last, and the System drops it at exit.
    return {
        "saturated": True,
        "bucket_size": bucket_size,
        "restore_rate": restore_rate,
        "window_s": window_s,
        "seconds_to_first_throttle": round(t_start - started, 2),
        "points_used": used,
        "points_restored": round(restore_rate * window_s),
        "share_of_restore_rate_used": round(used / (restore_rate * window_s), 3),
        "calls": len(calls),
        "throttled_answers": throttled,
        "throttled_share": round(throttled / len(calls), 3) if calls else None,
    }


def run_all(workers: int = 2, concurrency: int = 2, quick: bool = False) -> dict[str, Any]:
    """All four on one system; `quick` shrinks every benchmark (a smoke run, not a measurement)."""
    env = {"SWEEP_AFTER_S": "10", "SWEEP_INTERVAL_S": "5", "LOG_LEVEL": "WARNING"}
    results: dict[str, Any] = {}
    with System("pipeline", workers=workers, concurrency=concurrency, env=env) as system:
        results["calls"] = calls_per_lifecycle(system, repeats=2 if quick else 5)
        results["latency"] = latency(system, duration_s=5 if quick else 15)
        results["throughput"] = throughput(system, per_slot=3 if quick else 10)
        system.set_workers(workers, concurrency)  # back to the configuration the others ran on
        results["saturation"] = saturation(system, window_s=10 if quick else 30)
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run_all(quick="--quick" in sys.argv), indent=2))
