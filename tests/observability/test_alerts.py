"""config/alerts.yml: valid rules over the series we export, and the first one, the source's
promise, firing for a return held unsynced for ten minutes without an explained wait.

promtool comes with Debian's ``prometheus`` package. Where it is installed, the rules go through
``promtool check rules`` and the alert is evaluated by ``promtool test rules``, fed the series
scraped from a real app; the Python checks below run everywhere (a machine without the package
still checks every rule's expression and evaluates the first alert's condition from a scrape).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.conftest import (
    ROOT,
    RunningApp,
    Samples,
    child_env,
    hold_return,
    run_python,
    scrape_dir,
    unique_shop,
    value,
)
from tests.observability.test_metrics import COUNT_ONCE

RULES = ROOT / "config" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)
FIRST = "ReturnUnsyncedUnexplained"
AGE = "returnsync_oldest_unexplained_return_age_seconds"
COUNT = "returnsync_unsynced_unexplained_returns"


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.fullmatch(r"((\d+)(ms|s|m|h|d))+", duration)
    assert parts, duration
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d)", duration))


def threshold_of(rule: dict[str, Any]) -> float:
    """The age the first alert compares with (``... AGE) > N``)."""
    found = re.search(re.escape(AGE) + r"\)\s*>\s*(\d+)", rule["expr"])
    assert found, rule["expr"]
    return float(found.group(1))


def exported_names(app: RunningApp, tmp_path: Path) -> set[str]:
    """Every series name the code exports: each function called once, plus a real scrape."""
    run_python(COUNT_ONCE, child_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path)))
    return {name for name, _ in [*scrape_dir(tmp_path), *app.scrape()]}


def test_every_rule_is_complete_and_names_only_series_we_export(
    app_server: RunningApp, clean_db: str, tmp_path: Path
):
    hold_return(unique_shop("any"), sync="pending", accepted_ago=timedelta(minutes=1))  # per-shop series
    names = exported_names(app_server, tmp_path)
    found = rules()
    assert found[0]["alert"] == FIRST  # the promise comes first
    assert {r["alert"] for r in found} >= {FIRST, "ReturnsyncWorkersDown", "ReturnsyncBeatStalled"}
    for rule in found:
        expr = rule["expr"]
        assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            seconds(rule["for"])
        # A minimal sanity check of the expression: brackets balance, and every series it reads
        # is one the code exports (a renamed series would silence the alert, not break it).
        for opening, closing in ("()", "[]", "{}"):
            assert expr.count(opening) == expr.count(closing), (rule["alert"], opening)
        used = set(re.findall(r"\breturnsync_[a-z_]+", expr))
        assert used and used <= names, (rule["alert"], used - names)


@needs_promtool
def test_promtool_accepts_the_rules():
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def hold_three_shops(stuck_for: timedelta) -> tuple[str, str, str]:
    """A return unsynced for ``stuck_for`` with nothing to explain it; one waiting for much longer
    but explained (its order is not fulfilled); one pending but accepted just now."""
    stuck, explained, fresh = unique_shop("stuck"), unique_shop("explained"), unique_shop("fresh")
    hold_return(stuck, sync="pending", accepted_ago=stuck_for)
    hold_return(
        explained,
        sync="waiting",
        detail="order not fulfilled yet",
        accepted_ago=timedelta(hours=3),
        event_status="waiting",
    )
    hold_return(fresh, sync="pending", accepted_ago=timedelta(seconds=20))
    return stuck, explained, fresh


def firing_now(samples: Samples, shops: tuple[str, ...], rule: dict[str, Any]) -> set[str]:
    """The first alert's condition evaluated on one scrape. The age grows by one second per second
    for as long as the return stays unsynced, so an age above the threshold plus the ``for:``
    means the condition has held for all of ``for:``: the alert fires."""
    limit = threshold_of(rule) + seconds(rule.get("for", "0s"))
    return {
        shop
        for shop in shops
        if (value(samples, COUNT, shop=shop) or 0) > 0 and (value(samples, AGE, shop=shop) or 0) > limit
    }


def test_the_ten_minute_alert_fires_for_a_return_held_unsynced(app_server: RunningApp, clean_db: str):
    rule = rules()[0]
    # The rule's own numbers make the promise's ten minutes.
    assert threshold_of(rule) + seconds(rule["for"]) == 600
    shops = hold_three_shops(stuck_for=timedelta(minutes=11))
    assert firing_now(app_server.scrape(), shops, rule) == {shops[0]}


def test_a_return_unsynced_for_nine_minutes_does_not_fire_yet(app_server: RunningApp, clean_db: str):
    shops = hold_three_shops(stuck_for=timedelta(minutes=9))
    assert firing_now(app_server.scrape(), shops, rules()[0]) == set()


def annotations(alert: str, value: float | None = None, **labels: str) -> dict[str, str]:
    """The rule's annotations as Prometheus renders them (the few templates the rules use)."""
    (rule,) = [r for r in rules() if r["alert"] == alert]
    rendered = {}
    for key, template in rule["annotations"].items():
        for label, text in labels.items():
            template = template.replace("{{ $labels." + label + " }}", text)
        if value is not None:
            template = template.replace("{{ $value | humanizeDuration }}", humanize_duration(value))
        assert "{{" not in template, template
        rendered[key] = template
    return rendered


def humanize_duration(v: float) -> str:
    """Prometheus' humanizeDuration, for the minutes this test reaches."""
    whole = int(v)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m {secs}s" if minutes else f"{v:.4g}s"


def run_promtool_test(tmp_path: Path, series: list[dict[str, str]], tests: list[dict[str, Any]]) -> None:
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "30s",
        "tests": [{"interval": "30s", "input_series": series, "alert_rule_test": tests}],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_fires_the_ten_minute_alert_from_scraped_series(
    app_server: RunningApp, clean_db: str, tmp_path: Path
):
    """The scrape of a real app at time 0, then promtool plays the next minutes: the ages grow
    by 30 s per 30 s step, the counts stay. Two web instances serve the same gauges."""
    stuck, explained, fresh = shops = hold_three_shops(stuck_for=timedelta(minutes=5))
    samples = app_server.scrape()
    steps = 30  # 15 minutes of 30 s steps
    series = []
    for shop in shops:
        age, count = value(samples, AGE, shop=shop), value(samples, COUNT, shop=shop)
        assert age is not None and count is not None
        for instance in ("web-1:8000", "web-2:8000"):
            labels = f'shop="{shop}",instance="{instance}",job="returnsync"'
            grows = f"{age}+30x{steps}" if age > 0 else f"0x{steps}"
            series.append({"series": f"{AGE}{{{labels}}}", "values": grows})
            series.append({"series": f"{COUNT}{{{labels}}}", "values": f"{count}x{steps}"})
    ages = {shop: value(samples, AGE, shop=shop) or 0.0 for shop in shops}
    # (Ages at the scrape; the evaluations below hold for a scrape up to 30 s late.)
    assert 300 <= ages[stuck] < 330 and ages[explained] == 0 and 20 <= ages[fresh] < 50

    def firing(at_s: int, *which: str) -> list[dict[str, Any]]:
        return [
            {
                "exp_labels": {"shop": shop, "severity": "page"},
                "exp_annotations": annotations(FIRST, ages[shop] + at_s, shop=shop),
            }
            for shop in which
        ]

    run_promtool_test(
        tmp_path,
        series,
        [
            # 8 minutes unsynced: below the 9-minute threshold.
            {"eval_time": "3m", "alertname": FIRST, "exp_alerts": []},
            # 9.5 minutes: above it, but not yet for the rule's minute (pending, not firing).
            {"eval_time": "4m30s", "alertname": FIRST, "exp_alerts": []},
            # 10.5 minutes: firing, for the stuck shop only, once (not per instance).
            {"eval_time": "5m30s", "alertname": FIRST, "exp_alerts": firing(330, stuck)},
            # By 10.5 minutes the return accepted 20 s before the scrape has waited 10 minutes too;
            # the explained one (three hours, its order not fulfilled) never fires.
            {"eval_time": "9m", "alertname": FIRST, "exp_alerts": firing(540, stuck)},
            {"eval_time": "10m30s", "alertname": FIRST, "exp_alerts": firing(630, fresh, stuck)},
        ],
    )


@needs_promtool
def test_promtool_workers_down_and_beat_stalled(tmp_path: Path):
    # A worker whose heartbeat (a Unix time, as promtool's clock starts at 0) stops at 3 minutes,
    # and a sweep (every 30 s) whose last run stops at 5 minutes.
    alive_then_dead = "0+30x6 180x40"
    run_promtool_test(
        tmp_path,
        [
            {
                "series": 'returnsync_worker_heartbeat_timestamp_seconds{worker="celery@a"}',
                "values": alive_then_dead,
            },
            {"series": 'returnsync_beat_interval_seconds{task="returns.sweep"}', "values": "30x40"},
            {
                "series": 'returnsync_beat_last_run_timestamp_seconds{task="returns.sweep"}',
                "values": "0+30x10 300x30",
            },
        ],
        [
            {"eval_time": "5m", "alertname": "ReturnsyncWorkersDown", "exp_alerts": []},
            # Heartbeat 180 s old from 6 min on, held 2 minutes: firing from 8 min on.
            {
                "eval_time": "9m",
                "alertname": "ReturnsyncWorkersDown",
                "exp_alerts": [
                    {
                        "exp_labels": {"severity": "page"},
                        "exp_annotations": annotations("ReturnsyncWorkersDown"),
                    }
                ],
            },
            {"eval_time": "6m", "alertname": "ReturnsyncBeatStalled", "exp_alerts": []},
            # Last run at 5 min, 3 intervals (90 s) later stale, then 5 minutes of `for:`.
            {
                "eval_time": "12m",
                "alertname": "ReturnsyncBeatStalled",
                "exp_alerts": [
                    {
                        "exp_labels": {"task": "returns.sweep", "severity": "warning"},
                        "exp_annotations": annotations("ReturnsyncBeatStalled", task="returns.sweep"),
                    }
                ],
            },
        ],
    )
