"""Pipeline benchmarks: the goals of issue #10, each against a real local system (bench.harness).

Every system here runs the worker configuration of ``make run`` (Procfile): one Celery worker
process, gevent pool, concurrency 125, with the relay's fair dispatcher and the shops' shared
cost budget as they ship.

``calls``       Shopify calls and cost points per lifecycle (nothing->completed as one
                ``return.completed``, created>completed, requested>created>completed; each event
                synced before the next), from the stand-in's call log, next to the issue's
                before-figures and the fewest calls the Admin API allows one mutation per call.
``latency``     accepted -> applied at light load (4 events/s), p50/p99, stand-in at +0 and +100 ms.
``hidden``      lifecycles/s across 100 shops with ample budget, all offered at once (the workers
                are the bottleneck), stand-in at +0 and +100 ms: their ratio says how well the
                workers hide Shopify's latency; CPU seconds of our processes per lifecycle.
``saturation``  one shop (bucket 1,000, restore 100/s) with a backlog: share of its restore rate
                used over a steady window, THROTTLED share of its calls after the first second.
``fairness``    one shop draining a 10,000-event backlog at its budget while 99 quiet shops send
                1 event/s each, then 0.25 event/s each: the quiet shops' accepted -> applied
                p50/p99, and how fast the backlog drained meanwhile.

Each function takes a running ``System`` and returns a dict of figures; ``run_all`` runs them on
two systems (the two backlog benchmarks last, the fairness one on a system of its own, so no
backlog slows another benchmark). Every wait is bounded; a benchmark that runs out of time reports
what it saw with ``"complete": False``. Nothing here asserts a timing.
"""

from __future__ import annotations

import itertools
import math
import os
import resource
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import System, machine_cpu_seconds, wait_until

ORDER_BASE = 6_000_000_000_000  # order ids of the benchmarks; line ids are derived from them
LINE_OFFSET = 500_000_000
_ids = itertools.count(1)
BIG_BUCKET = {"bucket_size": 1_000_000, "restore_rate": 1_000_000}  # rate limit out of the picture
# What `make run` starts (Procfile): one worker process, gevent, 125 greenlets.
WORKERS, CONCURRENCY, POOL = 1, 125, "gevent"
FINAL_OK = ("applied", "superseded")
CORES = os.cpu_count() or 1

# Issue #10's goals, next to which the table prints the measured figures.
GOALS: dict[str, Any] = {
    "calls": {"completed": 3, "created>completed": 3, "requested>created>completed": 4},
    "hidden_latency_ratio": 0.80,
    "saturation_share": 0.90,
    "saturation_throttled_share": 0.01,
    "fairness_p99_s": 1.0,
}
# The figures before the work (README "Performance and reliability", benchmark 3).
BEFORE: dict[str, dict[str, float]] = {
    "created>completed": {"calls": 8.0, "cost": 71.0},
    "requested>created>completed": {"calls": 11.2, "cost": 98.6},
}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)


# --- shops, orders, events ---

Order = tuple[int, str, int]  # (order number, name, line item number)


def _new_orders(count: int) -> list[Order]:
    """Fresh order ids (nothing is created): one fulfilled line each once seeded."""
    made = []
    for _ in range(count):
        seq = next(_ids)
        made.append((ORDER_BASE + seq, f"#B{seq}", ORDER_BASE + LINE_OFFSET + seq))
    return made


def _seed(order: Order) -> dict[str, Any]:
    num, name, line = order
    return {"name": name, "id": num, "line_items": [{"id": line, "quantity": 1, "title": "Shirt"}]}


def _shops(system: System, label: str, count: int, orders_each: int, **limits: int) -> dict[str, list[Order]]:
    """``count`` shops on the stand-in and registered, each with ``orders_each`` fulfilled one-line
    orders (one seed request, one registration process: see ``System.add_shops``)."""
    tag = next(_ids)
    orders = {f"bench-{label}-{tag}-{i}.myshopify.com": _new_orders(orders_each) for i in range(count)}
    system.add_shops(
        list(orders),
        orders={d: [_seed(o) for o in os_] for d, os_ in orders.items()},
        **(limits or BIG_BUCKET),
    )
    return orders


def _orders(system: System, shop: str, count: int) -> list[Order]:
    """``count`` more fulfilled one-line orders on an existing stand-in shop."""
    made = _new_orders(count)
    for num, name, line in made:
        system.standin.create_order(shop, name, [{"id": line, "quantity": 1, "title": "Shirt"}], order_id=num)
    return made


def _event(shop: str, order: Order, state: str, method: str = "refund") -> dict[str, Any]:
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


# --- sending and waiting ---


def _send_all(system: System, events: list[dict[str, Any]], senders: int = 16) -> list[int]:
    """Closed loop: every event offered at once, as fast as `senders` producers and ingest go."""
    if not events:
        return []
    with ThreadPoolExecutor(max_workers=senders) as pool:
        return list(pool.map(system.send, events))


def _send_paced(
    system: System, events: list[dict[str, Any]], rate_per_s: float, senders: int = 16
) -> tuple[list[int], float]:
    """Open loop: event i leaves at i / rate whatever the answers before it. Returns the statuses
    and the seconds the last event left behind its schedule (the sender's own lag)."""
    start = time.monotonic()
    lag = 0.0
    with ThreadPoolExecutor(max_workers=senders) as pool:
        futures = []
        for i, event in enumerate(events):
            delay = start + i / rate_per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                lag = -delay
            futures.append(pool.submit(system.send, event))
        return [f.result() for f in futures], lag


def _open_count(system: System, event_ids: list[str]) -> int:
    """Events of the list not yet final (still accepted or waiting, or not stored at all)."""
    rows = system.query(
        "SELECT count(*) AS n FROM events WHERE event_id = ANY(%s) AND status NOT IN ('accepted', 'waiting')",
        (event_ids,),
    )
    return len(event_ids) - int(rows[0]["n"])


def _wait_events_final(
    system: System, event_ids: list[str], timeout_s: float, interval_s: float = 0.25
) -> bool:
    """True once every event is out of accepted/waiting (applied, superseded or worse)."""
    try:
        wait_until(
            lambda: _open_count(system, event_ids) == 0, timeout_s, interval_s, what="events to be applied"
        )
        return True
    except Exception:  # noqa: BLE001 - a timeout is a result here, reported as incomplete
        return False


def _timings(system: System, event_ids: list[str]) -> dict[str, Any]:
    """Postgres' own clock: first/last accepted, last finished, and accepted -> applied per event."""
    rows = system.query(
        "SELECT status, EXTRACT(EPOCH FROM received_at) AS r, EXTRACT(EPOCH FROM finished_at) AS f"
        " FROM events WHERE event_id = ANY(%s)",
        (event_ids,),
    )
    done = [r for r in rows if r["status"] in FINAL_OK and r["f"] is not None]
    return {
        "stored": len(rows),
        "done": len(done),
        "other": sum(1 for r in rows if r["status"] not in (*FINAL_OK, "accepted", "waiting")),
        "first_received": min((float(r["r"]) for r in rows), default=None),
        "last_received": max((float(r["r"]) for r in rows), default=None),
        "finished": sorted(float(r["f"]) for r in done),
        "seconds": [float(r["f"]) - float(r["r"]) for r in done],
    }


def _db_now(system: System) -> float:
    return float(system.query("SELECT EXTRACT(EPOCH FROM clock_timestamp()) AS t")[0]["t"])


def _synced(system: System, shop: str, return_id: str, state: str, timeout_s: float) -> bool:
    def done() -> bool:
        answer = system.status(shop, return_id)
        return bool(answer and answer.get("state") == state and answer.get("sync") == "synced")

    try:
        wait_until(done, timeout_s, interval_s=0.1, what=f"{return_id} at {state}")
        return True
    except Exception:  # noqa: BLE001
        return False


# --- CPU ---

OURS = ("worker", "relay", "ingest", "beat")  # process groups of ours (the stand-in plays Shopify)


class _Cpu:
    """CPU seconds between two readings: our process groups (workers with children, relay,
    ingest with gunicorn's workers, beat), the stand-in, the run's Postgres backends, this
    benchmark process (the producers) and the whole machine's busy share."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        groups = self.system.cpu_seconds()
        busy, total = machine_cpu_seconds()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out = {
            "ours": sum(s for name, s in groups.items() if name.startswith(OURS)),
            "workers": sum(s for name, s in groups.items() if name.startswith("worker")),
            "relay": groups.get("relay", 0.0),
            "ingest": groups.get("ingest", 0.0),
            "beat": groups.get("beat", 0.0),
            "standin": groups.get("standin", 0.0),
            "postgres": self.system.postgres_cpu_seconds(),
            "bench": usage.ru_utime + usage.ru_stime,
            "machine_busy": busy,
            "machine_total": total,
        }
        return out

    def since(self, lifecycles: int | None = None) -> dict[str, Any]:
        """The CPU since construction; per lifecycle too when they are all done in that time."""
        end = self._read()
        delta = {k: end[k] - self.start[k] for k in end}
        total = delta.pop("machine_total")
        busy = delta.pop("machine_busy")
        out: dict[str, Any] = {
            "seconds": {k: round(v, 2) for k, v in delta.items()},
            # Every process on the machine, other users' included: near 1.0, the machine is the limit.
            "machine_busy_share": round(busy / total, 3) if total > 0 else None,
        }
        if lifecycles:
            out["ours_ms_per_lifecycle"] = round(1000 * delta["ours"] / lifecycles, 2)
            out["ms_per_lifecycle"] = {k: round(1000 * v / lifecycles, 2) for k, v in delta.items()}
        return out


# --- calls per lifecycle ---

# The fewest Admin API calls that produce PRODUCT.md §2's effects for a `refund` return with a
# tracking number, one mutation per call, when the sync knows the order GID (the events carry it):
# - one query for the order's returnable fulfillment line items (returnableFulfillments),
# - one mutation per transition: returnRequest / returnApproveRequest or returnCreate /
#   returnClose; the approve/create payload can select the reverse fulfillment order's line
#   items, so attaching tracking needs no extra read,
# - reverseDeliveryCreateWithShipping (tracking) and tagsAdd (refund-method tag).
# The access-scope check is once per shop, not per lifecycle, and is left out (warm-up absorbs it).
MINIMUM_CALLS: dict[str, dict[str, int]] = {
    "completed": {"queries": 1, "mutations": 4},  # create, delivery, tag, close
    "created>completed": {"queries": 1, "mutations": 4},  # create, delivery, tag, close
    "requested>created>completed": {"queries": 1, "mutations": 5},  # request, approve, delivery, tag, close
}
# The stand-in charges 10 points per mutation and at least 1 per query (standin/throttle.py), so
# this is the cost floor of the minimum call list under its cost model.
MUTATION_COST, QUERY_FLOOR = 10, 1


def calls_per_lifecycle(system: System, repeats: int = 5) -> dict[str, Any]:
    """Run each lifecycle `repeats` times, one event at a time (each synced before the next, as in
    real life where days pass between them), and count the stand-in's calls per lifecycle and per
    event. `completed` is nothing -> completed: one `return.completed` for a return never seen."""
    ((shop, seeded),) = _shops(system, "calls", 1, 1 + repeats * len(MINIMUM_CALLS)).items()
    orders = iter(seeded)
    warm = next(orders)
    system.send(_event(shop, warm, "created"))
    _synced(system, shop, f"R-{warm[0]}", "created", 60)
    result: dict[str, Any] = {"repeats": repeats, "lifecycles": {}}
    for name, minimum in MINIMUM_CALLS.items():
        path = name.split(">")
        counts: list[int] = []
        costs: list[int] = []
        query_costs: list[int] = []
        operations: dict[str, int] = {}
        per_event: dict[str, list[int]] = {state: [] for state in path}
        complete = True
        for _ in range(repeats):
            order = next(orders)
            start = len(system.standin.calls(shop))
            before = start
            for state in path:
                system.send(_event(shop, order, state))
                complete &= _synced(system, shop, f"R-{order[0]}", state, 60)
                now = len(system.standin.calls(shop))
                per_event[state].append(now - before)
                before = now
            new = system.standin.calls(shop)[start:]
            counts.append(len(new))
            paid = [c for c in new if not c.get("throttled")]
            costs.append(sum(int(c.get("cost") or 0) for c in paid))
            query_costs.append(sum(int(c.get("cost") or 0) for c in paid if not _is_mutation(c)))
            for call in new:
                key = str(call.get("operation"))
                operations[key] = operations.get(key, 0) + 1
        floor_calls = minimum["queries"] + minimum["mutations"]
        floor_cost = minimum["queries"] * QUERY_FLOOR + minimum["mutations"] * MUTATION_COST
        mean_calls = statistics.fmean(counts)
        result["lifecycles"][name] = {
            "complete": complete,
            "calls": round(mean_calls, 2),
            "calls_max": max(counts),
            "calls_per_event": {s: round(statistics.fmean(v), 2) for s, v in per_event.items()},
            "cost": round(statistics.fmean(costs), 1),
            "query_cost": round(statistics.fmean(query_costs), 1),
            "mutation_cost": round(statistics.fmean(costs) - statistics.fmean(query_costs), 1),
            "goal_calls": GOALS["calls"][name],
            "before": BEFORE.get(name),
            "minimum_calls": floor_calls,
            "minimum_cost_floor": floor_cost,
            "calls_vs_minimum": round(mean_calls / floor_calls, 2),
            "operations_per_lifecycle": {k: round(v / repeats, 2) for k, v in sorted(operations.items())},
        }
    return result


# Root fields of the Admin API's query type that our documents read; any other root is a mutation.
QUERY_ROOTS = frozenset(
    {
        "order",
        "orders",
        "return",
        "returnableFulfillments",
        "returnReasonDefinitions",
        "currentAppInstallation",
    }
)


def _is_mutation(call: dict[str, Any]) -> bool:
    return any(root not in QUERY_ROOTS for root in call.get("root_fields") or [])


# --- latency at light load ---


def latency(
    system: System,
    rate_per_s: float = 4.0,
    duration_s: float = 15.0,
    added_latency_ms: tuple[int, ...] = (0, 100),
) -> dict[str, Any]:
    """accepted -> applied for `return.created` events (one lifecycle step each, on fresh orders)
    offered open loop at `rate_per_s`, from the database's own clock: events.received_at (the
    202) to events.finished_at (applied); once per stand-in latency."""
    count = max(1, int(rate_per_s * duration_s))
    result: dict[str, Any] = {"offered_per_s": rate_per_s, "duration_s": duration_s, "runs": {}}
    for added in added_latency_ms:
        ((shop, orders),) = _shops(system, f"lat{added}", 1, count + 1).items()
        system.standin.set_faults(shop, latency_ms=added)
        warm = orders.pop(0)  # the once-per-shop scope and reason reads stay out of the figures
        system.send(_event(shop, warm, "created"))
        _synced(system, shop, f"R-{warm[0]}", "created", 60)
        events = [_event(shop, order, "created") for order in orders]
        calls_before = len(system.standin.calls(shop))
        statuses, lag = _send_paced(system, events, rate_per_s)
        ids = [e["id"] for e in events]
        complete = _wait_events_final(system, ids, timeout_s=60 + duration_s)
        seconds = _timings(system, ids)["seconds"]
        calls = len(system.standin.calls(shop)) - calls_before
        result["runs"][f"{added}ms"] = {
            "events": count,
            "accepted": sum(1 for s in statuses if s == 202),
            "applied": len(seconds),
            "complete": complete,
            "sender_lag_s": round(lag, 3),
            "p50_ms": _ms(_percentile(seconds, 50)),
            "p99_ms": _ms(_percentile(seconds, 99)),
            "max_ms": _ms(max(seconds, default=None)),
            "mean_ms": _ms(statistics.fmean(seconds)) if seconds else None,
            "shopify_calls_per_event": round(calls / count, 2),
        }
    runs = result["runs"]
    low, high = f"{added_latency_ms[0]}ms", f"{added_latency_ms[-1]}ms"
    if len(runs) > 1 and runs[low].get("p50_ms") and runs[high].get("p50_ms"):
        result["p50_ratio"] = round(runs[high]["p50_ms"] / runs[low]["p50_ms"], 2)
        result["p99_ratio"] = round(runs[high]["p99_ms"] / runs[low]["p99_ms"], 2)
    return result


# --- hidden latency: lifecycles/s across many shops, +0 vs +100 ms ---


def _by_operation(calls: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        key = str(call.get("operation")) + (" (THROTTLED)" if call.get("throttled") else "")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _calls_of(system: System, shops: list[str], since: dict[str, int]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for shop in shops:
        calls += system.standin.calls(shop)[since.get(shop, 0) :]
    return calls


def hidden_latency(
    system: System,
    shops: int = 100,
    per_shop: int = 12,
    added_latency_ms: tuple[int, ...] = (0, 100),
    timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Closed loop: `shops` x `per_shop` nothing -> completed lifecycles (one `return.completed`
    each, on orders of their own) offered at once, so the workers, not the producers, are the
    bottleneck (`backlog_when_all_sent` says how much was still waiting once every event was
    accepted); ample budget. Once per stand-in latency on the same shops, with the worker's
    per-shop caches warm. lifecycles/s = applied / (last applied - first accepted), Postgres'
    clock; `drain_per_s` is the rate after the last event was accepted (no producer competing)."""
    seeded = _shops(system, "hid", shops, 1 + per_shop * len(added_latency_ms))
    domains = list(seeded)
    # Warm-up: each shop's once-per-process reads (access scopes, reasons) stay out of the runs.
    warm = [_event(d, seeded[d][0], "completed") for d in domains]
    _send_all(system, warm)
    warm_complete = _wait_events_final(system, [e["id"] for e in warm], timeout_s=120, interval_s=0.5)
    result: dict[str, Any] = {
        "shops": shops,
        "lifecycles_per_run": shops * per_shop,
        "lifecycle": "nothing->completed (one return.completed)",
        "warm_up_complete": warm_complete,
        "workers": f"{system.n_workers} process x {system.pool} {system.concurrency}",
        "runs": {},
    }
    for run, added in enumerate(added_latency_ms):
        for domain in domains:
            system.standin.set_faults(domain, latency_ms=added)
        events = [
            _event(d, seeded[d][1 + run * per_shop + j], "completed")
            for j in range(per_shop)
            for d in domains
        ]
        ids = [e["id"] for e in events]
        since = {d: len(system.standin.calls(d)) for d in domains}
        cpu = _Cpu(system)
        started = time.monotonic()
        statuses = _send_all(system, events)
        sent_s = time.monotonic() - started
        complete = _wait_events_final(system, ids, timeout_s=timeout_s, interval_s=0.5)
        t = _timings(system, ids)
        usage = cpu.since(t["done"])
        calls = _calls_of(system, domains, since)
        finished = t["finished"]
        figures: dict[str, Any] = {
            "standin_latency_ms": added,
            "lifecycles": len(events),
            "accepted": sum(1 for s in statuses if s == 202),
            "applied": t["done"],
            "not_applied": len(events) - t["done"],
            "complete": complete,
            "send_s": round(sent_s, 2),
        }
        if finished and t["first_received"] is not None:
            wall = finished[-1] - t["first_received"]
            after = [f for f in finished if f > t["last_received"]]
            drain = finished[-1] - t["last_received"]
            figures.update(
                {
                    "wall_s": round(wall, 2),
                    "lifecycles_per_s": round(len(finished) / wall, 2) if wall > 0 else None,
                    "backlog_when_all_sent": len(events) - (len(finished) - len(after)),
                    "drain_per_s": round(len(after) / drain, 2) if drain > 0 and after else None,
                    "accepted_to_applied_p50_ms": _ms(_percentile(t["seconds"], 50)),
                    "accepted_to_applied_p99_ms": _ms(_percentile(t["seconds"], 99)),
                }
            )
        figures.update(
            {
                "calls_per_lifecycle": round(len(calls) / max(1, len(events)), 2),
                "throttled_calls": sum(1 for c in calls if c.get("throttled")),
                "cpu": usage,
            }
        )
        result["runs"][f"{added}ms"] = figures
    runs = list(result["runs"].values())
    if len(runs) > 1 and runs[0].get("lifecycles_per_s") and runs[-1].get("lifecycles_per_s"):
        result["ratio"] = round(runs[-1]["lifecycles_per_s"] / runs[0]["lifecycles_per_s"], 3)
        result["goal_ratio"] = GOALS["hidden_latency_ratio"]
    result["complete"] = warm_complete and all(r["complete"] for r in runs)
    return result


# --- one saturated shop ---


def saturation(
    system: System,
    bucket_size: int = 1000,
    restore_rate: int = 100,
    settle_s: float = 5.0,
    window_s: float = 30.0,
    backlog: int | None = None,
) -> dict[str, Any]:
    """One shop gets a backlog of nothing -> completed lifecycles at once. Over `window_s` seconds
    starting `settle_s` after its first call (the bucket has been drained by then), the points its
    successful calls spent divided by what the bucket restored (1.0 = all of it), and the share of
    its calls answered THROTTLED after the first second. Restore 100/s is the lowest plan
    PRODUCT.md names; the bucket is at least Shopify's largest single-query cost (1,000)."""
    # Each lifecycle costs at least 40 points (four mutations): a backlog that lasts the window
    # even if every point were spent, and then half as much again.
    backlog = backlog or math.ceil(1.5 * (bucket_size + restore_rate * (settle_s + window_s)) / 40)
    ((shop, orders),) = _shops(
        system, "sat", 1, backlog, bucket_size=bucket_size, restore_rate=restore_rate
    ).items()
    events = [_event(shop, o, "completed") for o in orders]
    ids = [e["id"] for e in events]
    result: dict[str, Any] = {
        "bucket_size": bucket_size,
        "restore_rate": restore_rate,
        "backlog": backlog,
        "settle_s": settle_s,
        "window_s": window_s,
    }
    sent_at = time.time()
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(_send_all, system, events)

        def first_call() -> float | None:
            return next((float(c["at"]) for c in system.standin.calls(shop)), None)

        try:
            t0 = float(wait_until(first_call, 60, interval_s=0.2, what="the shop's first call"))
        except Exception:  # noqa: BLE001 - nothing was served: say so
            sending.result()
            return {**result, "saturated": False, "complete": False}
        start, end = t0 + settle_s, t0 + settle_s + window_s
        time.sleep(max(0.0, start - time.time()))
        levels = []  # the stand-in's bucket, twice a second over the window
        while time.time() < end:
            levels.append(float(system.standin.state(shop)["throttle"]["currently_available"]))
            time.sleep(max(0.0, min(0.5, end - time.time())))
        statuses = sending.result()
    left = _open_count(system, ids)
    calls = system.standin.calls(shop)
    window = [c for c in calls if start <= float(c["at"]) < end]
    after_first_second = [c for c in calls if t0 + 1 <= float(c["at"]) < end]
    used = sum(int(c.get("cost") or 0) for c in window if not c.get("throttled") and c.get("status") == 200)
    throttled = sum(1 for c in after_first_second if c.get("throttled"))
    finished_in_window = system.query(
        "SELECT count(*) AS n FROM events WHERE event_id = ANY(%s) AND status IN ('applied', 'superseded')"
        " AND finished_at >= to_timestamp(%s) AND finished_at < to_timestamp(%s)",
        (ids, start, end),
    )[0]["n"]
    runs = system.query(
        "SELECT a.outcome, count(*) AS n FROM attempts a JOIN orders o ON o.id = a.order_id"
        " JOIN shops s ON s.id = o.shop_id WHERE s.domain = %s AND a.finished_at >= to_timestamp(%s)"
        " AND a.finished_at < to_timestamp(%s) GROUP BY a.outcome",
        (shop, start, end),
    )
    # The backlog is left behind on purpose: the System drops it at exit.
    result.update(
        {
            "saturated": left > 0,
            "complete": left > 0,
            "accepted": sum(1 for s in statuses if s == 202),
            "seconds_to_first_call": round(t0 - sent_at, 2),
            "points_used": used,
            "points_restored": round(restore_rate * window_s),
            "share_of_restore_rate_used": round(used / (restore_rate * window_s), 3),
            "goal_share": GOALS["saturation_share"],
            "bucket_level_at_window_start": levels[0] if levels else None,
            "bucket_level_at_window_end": levels[-1] if levels else None,
            "bucket_level_mean": round(statistics.fmean(levels), 1) if levels else None,
            # A full bucket restores nothing: every second spent there is budget lost for good.
            "bucket_full_share_of_window": (
                round(sum(1 for x in levels if x >= bucket_size) / len(levels), 3) if levels else None
            ),
            "runs_in_window_by_outcome": {r["outcome"]: int(r["n"]) for r in runs},
            "calls_in_window": len(window),
            "calls_in_window_by_operation": _by_operation(window),
            "calls_after_first_second": len(after_first_second),
            "throttled_after_first_second": throttled,
            "throttled_share": round(throttled / len(after_first_second), 4) if after_first_second else None,
            "goal_throttled_share": GOALS["saturation_throttled_share"],
            "lifecycles_in_window": int(finished_in_window),
            "lifecycles_per_s": round(int(finished_in_window) / window_s, 2),
            "points_per_lifecycle": round(used / int(finished_in_window), 1) if finished_in_window else None,
            "backlog_left_at_end": left,
        }
    )
    return result


# --- fairness: one backlog, 99 quiet shops ---


def fairness(
    system: System,
    backlog: int = 10_000,
    quiet_shops: int = 99,
    rates_per_shop: tuple[float, ...] = (1.0, 0.25),
    duration_s: float = 45.0,
    bucket_size: int = 1000,
    restore_rate: int = 100,
    timeout_s: float = 120.0,
) -> dict[str, Any]:
    """One shop (bucket 1,000, restore 100/s) gets `backlog` `return.completed` events (one per
    order) as fast as ingest takes them; then, while it drains, `quiet_shops` shops send events
    for `duration_s` at each of `rates_per_shop` in turn (open loop; each quiet order gets
    created, then completed a round later; the first rate is the issue's, a lower one shows the
    backlog's effect where this machine's capacity is not the limit). Per rate: accepted ->
    applied of the quiet shops' events (Postgres' clock), how fast the backlog drained meanwhile
    and whether it was still there at the end."""
    ((big, big_orders),) = _shops(
        system, "backlog", 1, backlog, bucket_size=bucket_size, restore_rate=restore_rate
    ).items()
    rounds = [max(1, int(duration_s * rate)) for rate in rates_per_shop]
    quiet = _shops(system, "quiet", quiet_shops, 1 + sum((r + 1) // 2 for r in rounds))
    domains = list(quiet)
    result: dict[str, Any] = {
        "backlog": backlog,
        "backlog_bucket_size": bucket_size,
        "backlog_restore_rate": restore_rate,
        "quiet_shops": quiet_shops,
        "duration_s": duration_s,
        "goal_p99_ms": 1000 * GOALS["fairness_p99_s"],
        "phases": {},
    }
    # Warm the quiet shops first (their once-per-process reads), as in a system that has run a while.
    warm = [_event(d, quiet[d][0], "created") for d in domains]
    _send_all(system, warm)
    result["warm_up_complete"] = _wait_events_final(system, [e["id"] for e in warm], 120, interval_s=0.5)

    big_events = [_event(big, o, "completed") for o in big_orders]
    big_ids = [e["id"] for e in big_events]
    started = time.monotonic()
    statuses = _send_all(system, big_events)
    result["backlog_send_s"] = round(time.monotonic() - started, 2)
    result["backlog_accepted"] = sum(1 for s in statuses if s == 202)
    result["backlog_accepted_per_s"] = round(
        result["backlog_accepted"] / max(0.001, result["backlog_send_s"]), 1
    )

    next_order = 1
    for rate, count in zip(rates_per_shop, rounds, strict=True):
        # Round r: every quiet shop sends one event (created of its next order on even rounds,
        # completed of that order on odd ones), the shops spread evenly over the round.
        events = [
            _event(d, quiet[d][next_order + r // 2], "created" if r % 2 == 0 else "completed")
            for r in range(count)
            for d in domains
        ]
        next_order += (count + 1) // 2
        result["phases"][f"{rate:g}/s"] = _quiet_phase(
            system, events, rate * quiet_shops, big, big_ids, restore_rate, domains, timeout_s
        )
    phases = list(result["phases"].values())
    result["complete"] = bool(result["warm_up_complete"]) and all(p["complete"] for p in phases)
    return result


def _quiet_phase(
    system: System,
    events: list[dict[str, Any]],
    rate_per_s: float,
    big: str,
    big_ids: list[str],
    restore_rate: int,
    domains: list[str],
    timeout_s: float,
) -> dict[str, Any]:
    ids = [e["id"] for e in events]
    open_before = _open_count(system, big_ids)
    since = {d: len(system.standin.calls(d)) for d in domains}
    t_start, wall_start = _db_now(system), time.time()
    cpu = _Cpu(system)
    statuses, lag = _send_paced(system, events, rate_per_s)
    t_end, wall_end = _db_now(system), time.time()
    open_after = _open_count(system, big_ids)
    usage = cpu.since()  # over the sending window: the backlog's work is in it too
    complete = _wait_events_final(system, ids, timeout_s, interval_s=0.5)
    t = _timings(system, ids)
    seconds = t["seconds"]
    big_done = system.query(
        "SELECT count(*) AS n FROM events WHERE event_id = ANY(%s) AND status IN ('applied', 'superseded')"
        " AND finished_at >= to_timestamp(%s) AND finished_at < to_timestamp(%s)",
        (big_ids, t_start, t_end),
    )[0]["n"]
    big_calls = [c for c in system.standin.calls(big) if wall_start <= float(c["at"]) < wall_end]
    big_points = sum(
        int(c.get("cost") or 0) for c in big_calls if not c.get("throttled") and c.get("status") == 200
    )
    quiet_calls = _calls_of(system, domains, since)
    window = t_end - t_start
    # What the machine can apply at all: every event applied in the window (quiet and backlog)
    # against the CPU every process on it spent meanwhile. An offered rate above this figure
    # queues whatever the scheduling.
    applied_in_window = system.query(
        "SELECT count(*) AS n FROM events"
        " WHERE finished_at >= to_timestamp(%s) AND finished_at < to_timestamp(%s)",
        (t_start, t_end),
    )[0]["n"]
    spent = sum(usage["seconds"][k] for k in ("ours", "standin", "postgres", "bench"))
    per_event_ms = 1000 * spent / applied_in_window if applied_in_window else None
    return {
        "complete": complete and open_after > 0,
        "events": len(events),
        "accepted": sum(1 for s in statuses if s == 202),
        "offered_per_s": round(len(events) / max(0.001, wall_end - wall_start), 1),
        "sender_lag_s": round(lag, 3),
        "window_s": round(window, 1),
        "samples": len(seconds),
        "not_applied": len(events) - len(seconds),
        "other_outcomes": t["other"],
        "p50_ms": _ms(_percentile(seconds, 50)),
        "p99_ms": _ms(_percentile(seconds, 99)),
        "max_ms": _ms(max(seconds, default=None)),
        "over_1s": sum(1 for s in seconds if s > 1.0),
        "applied_per_s": (
            round(len(seconds) / (t["finished"][-1] - t["first_received"]), 1)
            if t["finished"] and t["finished"][-1] > t["first_received"]
            else None
        ),
        "quiet_calls_per_event": round(len(quiet_calls) / max(1, len(events)), 2),
        "quiet_throttled_calls": sum(1 for c in quiet_calls if c.get("throttled")),
        "backlog_open_at_start": open_before,
        "backlog_open_at_end": open_after,
        "backlog_still_there": open_after > 0,
        "backlog_returns_per_s": round(int(big_done) / window, 2) if window > 0 else None,
        "backlog_share_of_restore_rate": round(big_points / (restore_rate * window), 3)
        if window > 0
        else None,
        "backlog_throttled_calls": sum(1 for c in big_calls if c.get("throttled")),
        "backlog_calls_by_operation": _by_operation(big_calls),
        "cpu_during_window": usage,
        "applied_in_window_per_s": round(int(applied_in_window) / window, 1) if window > 0 else None,
        "cpu_ms_per_applied_event": round(per_event_ms, 2) if per_event_ms else None,
        "machine_can_apply_per_s": round(CORES * 1000 / per_event_ms, 1) if per_event_ms else None,
    }


def run_all(quick: bool = False) -> dict[str, Any]:
    """Everything, in `make run`'s worker configuration; `quick` shrinks every benchmark (a smoke
    run, not a measurement). The fairness benchmark gets a system of its own: the backlog it
    leaves (thousands of events) must not drain into anything else."""
    results: dict[str, Any] = {"workers": {"processes": WORKERS, "pool": POOL, "concurrency": CONCURRENCY}}
    seconds: dict[str, float] = {}

    restarts: list[str] = []

    def timed(name: str, run: Any) -> None:
        # The Postgres cluster is the machine's: another suite restarting it mid-benchmark (a chaos
        # test does) stalls every run for a lease's lifetime. Say so instead of hiding it.
        up = _postgres_started(system)
        started = time.monotonic()
        results[name] = run()
        seconds[name] = round(time.monotonic() - started, 1)
        if _postgres_started(system) != up:
            restarts.append(name)

    config = {"workers": WORKERS, "concurrency": CONCURRENCY, "pool": POOL}
    with System("pipeline", **config) as system:
        timed("calls", lambda: calls_per_lifecycle(system, repeats=2 if quick else 5))
        timed("latency", lambda: latency(system, duration_s=5 if quick else 15))
        timed("hidden", lambda: hidden_latency(system, shops=100, per_shop=2 if quick else 12))
        timed(
            "saturation", lambda: saturation(system, settle_s=3 if quick else 5, window_s=8 if quick else 30)
        )
    with System("fairness", **config) as system:
        timed(
            "fairness",
            lambda: fairness(
                system,
                backlog=1_000 if quick else 10_000,
                quiet_shops=99,
                duration_s=8 if quick else 45,
            ),
        )
    results["seconds"] = seconds
    results["postgres_restarted_during"] = restarts
    return results


def _postgres_started(system: System) -> str:
    return str(system.query("SELECT pg_postmaster_start_time() AS t")[0]["t"])


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run_all(quick="--quick" in sys.argv), indent=2))
