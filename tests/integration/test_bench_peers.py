"""The bench's peer harness against the real servers, at a tiny size: Celery beat + a
prefork worker with a PostgreSQL result backend, and procrastinate's periodic tasks,
each end to end, and procrastinate's dispatch (deferred, nothing executed)."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("celery")  # the `bench` extra
pytest.importorskip("procrastinate")
pytest.importorskip("psycopg2")

from bench import peers

pytestmark = pytest.mark.skipif(shutil.which("rabbitmqctl") is None,
                                reason="the bench makes a vhost of its own with rabbitmqctl")

COUNT = 20


async def test_celery_beat_and_a_prefork_worker_record_every_run():
    result = await peers.celery(COUNT, 1, timeout_s=90)
    assert result["runs"] == COUNT and result["not_succeeded"] == 0
    assert 0 < result["seconds"] < 90
    assert result["rate_per_s"] == pytest.approx(COUNT / result["seconds"])
    assert result["rate_after_first_per_s"] >= result["rate_per_s"]  # beat's start-up left out


async def test_procrastinate_periodic_tasks_run_once_each_on_two_workers():
    result = await peers.procrastinate(COUNT, 2, timeout_s=90)
    assert result["not_succeeded"] == 0
    assert result["rate_per_s"] == pytest.approx(COUNT / result["seconds"])
    assert len(result["worker_cpu_s"]) == 2
    assert result["rate_after_first_per_s"] >= result["rate_per_s"]


async def test_procrastinate_dispatch_defers_and_executes_nothing():
    result = await peers.procrastinate_dispatch(COUNT, timeout_s=90)
    assert result["jobs_deferred"] == COUNT and result["jobs_executed"] == 0
    assert 0 < result["seconds"] < 90
