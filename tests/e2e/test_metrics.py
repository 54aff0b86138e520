"""/metrics of real processes while schedules fire: the series Sundial's alerting rules
(deploy/prometheus/alerts.yml) and Grafana dashboard (deploy/grafana/sundial.json) read
exist and have values."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, free_port, service_env, start_api, wait_for

ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "sundial.json"


def named_series(text: str) -> set[str]:
    """Metric names in PromQL expressions: sundial_* and the process collectors'."""
    return set(re.findall(r"\b((?:sundial|process|python)_[a-z_]+)\b", text))


def expressions() -> dict[str, str]:
    """Every PromQL expression of the rules and the dashboard, by where it is."""
    exprs = {f"alert {a}": e for a, e in re.findall(
        r"- alert: (\w+)\n(?:\s+#.*\n)*\s+expr: >?-?\s*((?:.|\n)*?)\n\s+(?:for|labels):",
        ALERTS.read_text())}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            exprs[f"panel {panel['title']} {target['refId']}"] = target["expr"]
    return exprs


def base_names(text: str) -> set[str]:
    """Names served in a Prometheus text page, histogram and counter suffixes included."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
    return names


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def test_rules_and_dashboard_parse_and_name_series() -> None:
    exprs = expressions()
    assert sum(k.startswith("alert ") for k in exprs) == ALERTS.read_text().count("- alert:")
    assert all(named_series(e) for e in exprs.values()), exprs


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian: prometheus) absent")
def test_promtool_accepts_the_rules() -> None:
    check = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_every_series_of_the_rules_and_dashboard_is_served_with_values(
        db_url, amqp_url, queue, processes, pool) -> None:
    await pool.execute(
        """WITH j AS (INSERT INTO jobs (name, handler, queue, payload, max_attempts)
                      VALUES ('ok', 'noop', $1, '{}', 1), ('bad', 'sleep', $1, '{"seconds": -1}', 1)
                      RETURNING id)
           INSERT INTO schedules (job_id, kind, interval_seconds, next_run_at)
           SELECT id, 'interval', 1, now() FROM j""", queue)
    ports = {"scheduler": free_port(), "worker": free_port()}
    env = {name: service_env(db_url, amqp_url, METRICS_PORT=port, WORKER_QUEUES=queue,
                             WORKER_HEARTBEAT_INTERVAL=0.5, SCHEDULER_POLL_INTERVAL=0.5)
           for name, port in ports.items()}
    for name in ports:
        processes([name], env[name])
    api = await start_api(processes, db_url, amqp_url)
    urls = [f"{api}/metrics", *(f"http://127.0.0.1:{p}/metrics" for p in ports.values())]

    async def scrape() -> list[str]:
        async with httpx.AsyncClient() as client:
            return [(await client.get(url)).text for url in urls]

    async def both_outcomes_seen() -> list[str] | None:
        try:
            pages = await scrape()
        except httpx.HTTPError:
            return None
        done = {labels["status"] for labels, value in
                samples(pages[2], "sundial_run_duration_seconds_count") if value > 0}
        return pages if {"succeeded", "failed"} <= done else None

    api_page, scheduler_page, worker_page = await wait_for(
        both_outcomes_seen, 60, interval=0.5, what="a success and a failure in the metrics")

    served = set().union(*(base_names(p) for p in (api_page, scheduler_page, worker_page)))
    missing = {where: sorted(named_series(e) - served) for where, e in expressions().items()
               if named_series(e) - served}
    assert not missing, missing

    def value(page: str, name: str, **labels: str) -> float:
        found = [v for ls, v in samples(page, name) if labels.items() <= ls.items()]
        assert found, f"{name}{labels} has no sample"
        return sum(found)

    assert value(api_page, "sundial_job_runs_last_hour", job_name="bad", status="failed") >= 1
    assert value(api_page, "sundial_job_runs_last_hour", job_name="ok", status="succeeded") >= 1
    assert value(api_page, "sundial_queue_workers", queue=queue) == 1
    assert value(api_page, "sundial_queue_depth", queue=queue) >= 0
    assert value(api_page, "sundial_worker_slots", state="free") >= 1
    assert value(api_page, "sundial_job_last_success_timestamp_seconds", job_name="ok") > 0
    assert value(api_page, "sundial_scheduler_last_pass_timestamp_seconds") > 0
    assert value(worker_page, "sundial_run_fire_lag_seconds_count", queue=queue) >= 2
    assert value(worker_page, "sundial_worker_concurrency") >= 1
    for page in (api_page, scheduler_page, worker_page):
        assert value(page, "process_resident_memory_bytes") > 0
