"""``make bench`` (= ``python -m bench``): every benchmark of the project in one run, one table.

Runs the stand-in benchmark (bench/bench_standin.py), the ingest benchmark (bench/bench_ingest.py)
and the pipeline benchmarks (bench/bench_pipeline.py) on this machine, one after the other, so
the figures and their ratios come from the same run. Prints one table whose header names the
machine (cores, CPU, Python), writes bench/results/latest.json and a chart latest.png.

    python -m bench [--quick] [--only standin,ingest,pipeline] [--out bench/results]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.bench_pipeline import GOALS
from bench.harness import PYTHON, ROOT

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("standin", "ingest", "pipeline")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def run_standin(quick: bool) -> dict[str, Any]:
    """The stand-in's own benchmark: its ``run()`` when it has one, else its CLI's printed figure."""
    module = importlib.import_module("bench.bench_standin")
    seconds = 2.0 if quick else 5.0
    if hasattr(module, "run"):
        return dict(module.run(seconds=seconds))
    done = subprocess.run(
        [PYTHON, "bench/bench_standin.py", "--seconds", str(seconds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    match = re.search(r"([\d.]+) mutations/s", done.stdout)
    return {"mutations_per_s": float(match[1]) if match else None, "output": done.stdout.strip()}


def run_ingest(quick: bool) -> dict[str, Any]:
    module = importlib.import_module("bench.bench_ingest")
    return dict(module.run(5.0 if quick else 15.0))


def run_pipeline(quick: bool) -> dict[str, Any]:
    from bench.bench_pipeline import run_all

    return run_all(quick=quick)


RUNNERS = {"standin": run_standin, "ingest": run_ingest, "pipeline": run_pipeline}


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _goal(measured: Any, op: str, goal: Any) -> str:
    """``0.93 (goal ≥ 0.8)``, with a ✗ when the goal is missed."""
    if measured is None:
        return f"n/a (goal {op} {goal})"
    met = measured >= goal if op == "≥" else measured <= goal
    return f"{measured} (goal {op} {goal}){'' if met else ' ✗'}"


def pipeline_rows(pipe: dict[str, Any], add: Any) -> None:
    """The pipeline section's rows: issue #10's goals next to the measured figures."""
    if not pipe or "error" in pipe:
        return
    for name, life in (_get(pipe, "calls", "lifecycles") or {}).items():
        label = "nothing->completed (one event)" if name == "completed" else name
        before = life.get("before") or {}
        was = f"; before {before['calls']}" if before else ""
        add(
            "calls",
            f"{label}: calls",
            f"{_goal(life['calls'], '≤', life['goal_calls'])}{was}"
            f"; one-mutation-per-call minimum {life['minimum_calls']}",
        )
        was = f"; before {before['cost']}" if before else ""
        add(
            "calls",
            f"{label}: cost points",
            f"{_goal(life['cost'], '≤', life['minimum_cost_floor'])} = {life['query_cost']} query"
            f" + {life['mutation_cost']} mutations{was}",
        )
    lat = pipe.get("latency", {})
    for name, run in (lat.get("runs") or {}).items():
        add(
            "latency",
            f"accepted->applied p50 / p99, {lat.get('offered_per_s')}/s, stand-in +{name}",
            f"{run.get('p50_ms')} / {run.get('p99_ms')} ms ({run.get('applied')}/{run.get('events')})",
        )
    hidden = pipe.get("hidden", {})
    for name, run in (hidden.get("runs") or {}).items():
        add(
            "hidden latency",
            f"lifecycles/s, {hidden.get('shops')} shops, stand-in +{name}",
            f"{run.get('lifecycles_per_s')} ({run.get('applied')}/{run.get('lifecycles')} in"
            f" {run.get('wall_s')} s; {run.get('backlog_when_all_sent')} still queued when all were sent)",
        )
    if hidden:
        add(
            "hidden latency",
            "ratio +100 ms / +0 ms",
            _goal(hidden.get("ratio"), "≥", GOALS["hidden_latency_ratio"]),
        )
        first = next(iter((hidden.get("runs") or {}).values()), {})
        cpu = first.get("cpu") or {}
        per = cpu.get("ms_per_lifecycle") or {}
        if per:
            add(
                "hidden latency",
                "CPU ms per lifecycle (+0 ms): ours = workers + relay + web",
                f"{per.get('ours')} = {per.get('workers')} + {per.get('relay')} + {per.get('ingest')};"
                f" Postgres {per.get('postgres')}, stand-in {per.get('standin')}",
            )
            # What CPU alone would allow: all cores busy with ours + Postgres, or the one worker
            # process on its one core (gevent runs a process on one core).
            cost = (per.get("ours") or 0) + (per.get("postgres") or 0)
            cores = os.cpu_count() or 1
            processes = _get(pipe, "workers", "processes") or 1
            worker = per.get("workers") or 0
            add(
                "hidden latency",
                "CPU ceiling: all cores / the worker process(es) on their cores",
                f"≈ {round(cores * 1000 / cost, 1) if cost else 'n/a'} /"
                f" {round(min(cores, processes) * 1000 / worker, 1) if worker else 'n/a'} lifecycles/s"
                f" (machine busy {cpu.get('machine_busy_share')} during the run, other users included)",
            )
    sat = pipe.get("saturation", {})
    if sat:
        add(
            "saturation",
            f"share of restore rate used ({sat.get('restore_rate')} pts/s, {sat.get('window_s')} s window)",
            _goal(sat.get("share_of_restore_rate_used"), "≥", GOALS["saturation_share"]),
        )
        add(
            "saturation",
            "THROTTLED share of calls after the first second",
            f"{_goal(sat.get('throttled_share'), '≤', GOALS['saturation_throttled_share'])}"
            f" ({sat.get('throttled_after_first_second')}/{sat.get('calls_after_first_second')})",
        )
        add(
            "saturation",
            "bucket full / runs handed back (throttled) in window",
            f"{sat.get('bucket_full_share_of_window')} of the time;"
            f" runs {sat.get('runs_in_window_by_outcome')}; backlog left {sat.get('backlog_left_at_end')}",
        )
    fair = pipe.get("fairness", {})
    for name, phase in (fair.get("phases") or {}).items():
        add(
            "fairness",
            f"{fair.get('quiet_shops')} quiet shops at {name}: p99 accepted->applied (ms)",
            _goal(phase.get("p99_ms"), "≤", fair.get("goal_p99_ms")),
        )
        add(
            "fairness",
            f"  at {name}: p50, samples, complete",
            f"{phase.get('p50_ms')} ms, {phase.get('samples')}/{phase.get('events')}, {phase.get('complete')}"
            f" (offered {phase.get('offered_per_s')}/s, applied {phase.get('applied_per_s')}/s)",
        )
        add(
            "fairness",
            f"  at {name}: backlog drain, share of its restore rate, left",
            f"{phase.get('backlog_returns_per_s')} returns/s, {phase.get('backlog_share_of_restore_rate')},"
            f" {phase.get('backlog_open_at_end')}/{fair.get('backlog')} left",
        )
        add(
            "fairness",
            f"  at {name}: all events applied in window; CPU per event (all processes); machine's ceiling",
            f"{phase.get('applied_in_window_per_s')}/s; {phase.get('cpu_ms_per_applied_event')} ms;"
            f" ≈ {phase.get('machine_can_apply_per_s')}/s",
        )
    complete = {
        "calls": all(x.get("complete") for x in (_get(pipe, "calls", "lifecycles") or {}).values()),
        "latency": all(x.get("complete") for x in (_get(pipe, "latency", "runs") or {}).values()),
        "hidden": _get(pipe, "hidden", "complete"),
        "saturation": _get(pipe, "saturation", "complete"),
        "fairness": _get(pipe, "fairness", "complete"),
    }
    add("pipeline", "complete", ", ".join(f"{k} {v}" for k, v in complete.items()))
    if pipe.get("postgres_restarted_during"):
        add(
            "pipeline",
            "Postgres restarted (by another user?) during",
            ", ".join(pipe["postgres_restarted_during"]),
        )
    for name, seconds in (pipe.get("seconds") or {}).items():
        add("pipeline", f"seconds: {name}", seconds, " s")


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(benchmark, figure, value) rows of the table; ratios next to what they compare."""
    out: list[tuple[str, str, str]] = []

    def add(section: str, label: str, value: Any, unit: str = "") -> None:
        out.append((section, label, "n/a" if value is None else f"{value}{unit}"))

    for section in SECTIONS:
        if section in results and "error" in results[section]:
            add(section, "error", results[section]["error"].splitlines()[-1][:70])
    standin = results.get("standin", {})
    if "error" not in standin and standin:
        add(
            "stand-in",
            "mutations/s (8 keep-alive clients)",
            standin.get("mutations_per_s") or standin.get("per_s"),
        )
    ingest = results.get("ingest", {})
    if "error" not in ingest:
        # The ingest bench owns its keys; show its scalar figures, one level of nesting deep
        # (e.g. bare.p50_ms next to real.p50_ms and their ratio).
        for key, value in ingest.items():
            inner = value.items() if isinstance(value, dict) else [("", value)]
            for sub, figure in inner:
                if isinstance(figure, int | float | str) and not isinstance(figure, bool):
                    add("1 ingest", f"{key}.{sub}" if sub else key, figure)
    pipeline_rows(results.get("pipeline", {}), add)
    return out


def table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [f"returnsync benchmarks — {m['cores']} cores ({m['cpu']}), Python {m['python']}, {m['at']}"]
    body = rows(results)
    width = max((len(r[0]) for r in body), default=10), max((len(r[1]) for r in body), default=10)
    lines.append(f"{'benchmark':{width[0]}}  {'figure':{width[1]}}  value")
    lines.append("-" * (width[0] + width[1] + 30))
    lines += [f"{a:{width[0]}}  {b:{width[1]}}  {c}" for a, b, c in body]
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on CI or a server
    import matplotlib.pyplot as plt

    pipe = results.get("pipeline", {})
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    m = results["machine"]
    fig.suptitle(f"returnsync — {m['cores']} cores, {m['at']}")

    ax = axes[0][0]
    lives = _get(pipe, "calls", "lifecycles") or {}
    labels = list(lives)
    xs = list(range(len(labels)))
    for offset, key, name in ((-0.3, "before", "before"), (-0.1, "calls", "measured")):
        values = [
            (lives[k].get(key) or {}).get("calls", 0) if key == "before" else lives[k][key] for k in labels
        ]
        ax.bar([x + offset for x in xs], values, width=0.2, label=name)
    ax.bar([x + 0.1 for x in xs], [lives[k]["goal_calls"] for k in labels], width=0.2, label="goal")
    ax.bar(
        [x + 0.3 for x in xs], [lives[k]["minimum_calls"] for k in labels], width=0.2, label="1 mutation/call"
    )
    ax.set_xticks(xs, [k.replace(">", "→\n") for k in labels])
    ax.set_title("Shopify calls per lifecycle")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    runs = _get(pipe, "latency", "runs") or {}
    names = list(runs)
    ax.bar(
        [f"{n}\np50" for n in names] + [f"{n}\np99" for n in names],
        [runs[n].get("p50_ms") or 0 for n in names] + [runs[n].get("p99_ms") or 0 for n in names],
    )
    ax.set_title("accepted → applied at light load (ms), by stand-in latency")

    ax = axes[0][2]
    hidden = _get(pipe, "hidden", "runs") or {}
    ax.bar([f"+{n}" for n in hidden], [r.get("lifecycles_per_s") or 0 for r in hidden.values()])
    ax.set_title(f"lifecycles/s, 100 shops (ratio {_get(pipe, 'hidden', 'ratio')}, goal ≥ 0.8)")

    ax = axes[1][0]
    sat = pipe.get("saturation", {})
    ax.bar(
        ["restore rate used", "THROTTLED share"],
        [sat.get("share_of_restore_rate_used") or 0, sat.get("throttled_share") or 0],
    )
    ax.axhline(GOALS["saturation_share"], linestyle="--", color="grey")
    ax.set_ylim(0, 1.1)
    ax.set_title("one saturated shop (goal ≥ 0.9 used, ≤ 0.01 THROTTLED)")

    ax = axes[1][1]
    phases = _get(pipe, "fairness", "phases") or {}
    ax.bar(
        [f"{n}\np50" for n in phases] + [f"{n}\np99" for n in phases],
        [p.get("p50_ms") or 0 for p in phases.values()] + [p.get("p99_ms") or 0 for p in phases.values()],
    )
    ax.axhline(1000 * GOALS["fairness_p99_s"], linestyle="--", color="grey")
    ax.set_title("quiet shops beside a 10k backlog: accepted → applied (ms)")

    ax = axes[1][2]
    per = _get(pipe, "hidden", "runs", "0ms", "cpu", "ms_per_lifecycle") or {}
    parts = [k for k in ("workers", "relay", "ingest", "beat", "postgres", "standin") if k in per]
    ax.bar(parts, [per[k] for k in parts])
    ax.set_title("CPU ms per lifecycle (+0 ms run)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small runs: a smoke test, not figures")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "seconds": {}}
    for section in [s for s in args.only.split(",") if s]:
        started = time.monotonic()
        print(f"running {section} ...", file=sys.stderr, flush=True)
        try:
            results[section] = RUNNERS[section](args.quick)
        except ModuleNotFoundError as error:
            results[section] = {"error": f"not available: {error.name}"}
        except Exception:  # noqa: BLE001 - one failed benchmark must not hide the others' figures
            results[section] = {"error": traceback.format_exc()}
        results["seconds"][section] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    chart(results, args.out / "latest.png")
    print(table(results))
    print(f"\nwritten: {args.out / 'latest.json'}, {args.out / 'latest.png'}")
    return 1 if any("error" in results.get(s, {}) for s in SECTIONS if s in results) else 0


if __name__ == "__main__":
    sys.exit(main())
