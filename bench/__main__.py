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
    pipe = results.get("pipeline", {})
    lat = pipe.get("latency", {})
    for name, run in lat.get("runs", {}).items():
        add(
            "2 latency",
            f"accepted->applied p50 / p99, stand-in +{name}",
            f"{run.get('p50_ms')} / {run.get('p99_ms')} ms ({run.get('applied')}/{run.get('events')})",
        )
    if lat:
        add(
            "2 latency",
            "ratio +50ms / +0ms (p50, p99)",
            f"{lat.get('p50_ratio_50ms_vs_0ms')}x, {lat.get('p99_ratio_50ms_vs_0ms')}x",
        )
    for name, life in (_get(pipe, "calls", "lifecycles") or {}).items():
        add("3 calls", f"{name}: calls (minimum)", f"{life['calls']} ({life['minimum_calls']})")
        add("3 calls", f"{name}: cost points (floor)", f"{life['cost']} ({life['minimum_cost_floor']})")
    for run in (_get(pipe, "throughput", "runs") or {}).values():
        add(
            "4 throughput",
            f"{run['processes']} proc x concurrency {run['concurrency']}",
            f"{run['lifecycles_per_s']} lifecycles/s (x{run.get('speedup_vs_1x1')})",
        )
    sat = pipe.get("saturation", {})
    if sat:
        add(
            "5 saturation",
            f"share of restore rate used ({sat.get('restore_rate')} pts/s)",
            sat.get("share_of_restore_rate_used"),
        )
        add("5 saturation", "THROTTLED answers in window", sat.get("throttled_answers"))
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
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    m = results["machine"]
    fig.suptitle(f"returnsync — {m['cores']} cores, {m['at']}")

    ax = axes[0][0]
    runs = _get(pipe, "latency", "runs") or {}
    names = list(runs)
    ax.bar(
        [f"{n}\np50" for n in names] + [f"{n}\np99" for n in names],
        [runs[n].get("p50_ms") or 0 for n in names] + [runs[n].get("p99_ms") or 0 for n in names],
    )
    ax.set_title("2. accepted → applied latency (ms), by added stand-in latency")

    ax = axes[0][1]
    lives = _get(pipe, "calls", "lifecycles") or {}
    labels = list(lives)
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], [lives[k]["calls"] for k in labels], width=0.4, label="measured")
    ax.bar([x + 0.2 for x in xs], [lives[k]["minimum_calls"] for k in labels], width=0.4, label="minimum")
    ax.set_xticks(list(xs), [k.replace(">", "→\n") for k in labels])
    ax.set_title("3. Shopify calls per lifecycle")
    ax.legend()

    ax = axes[1][0]
    tp = _get(pipe, "throughput", "runs") or {}
    ax.bar(list(tp), [r["lifecycles_per_s"] for r in tp.values()])
    ax.set_title("4. lifecycles/s by processes x concurrency (stand-in +100 ms)")

    ax = axes[1][1]
    sat = pipe.get("saturation", {})
    ax.bar(
        ["restore rate used", "THROTTLED share"],
        [sat.get("share_of_restore_rate_used") or 0, sat.get("throttled_share") or 0],
    )
    ax.set_ylim(0, 1.1)
    ax.set_title("5. one saturated shop")
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
