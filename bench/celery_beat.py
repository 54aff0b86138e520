"""Celery beat 5 as a peer, run as `celery beat` runs it: its default PersistentScheduler
(a shelve file, here under bench/logs) and its service loop, publishing to the bench's
RabbitMQ vhost with Celery's default settings, i.e. *without* publisher confirms (kombu's
py-amqp transport confirms only with `broker_transport_options={"confirm_publish": True}`,
which `--confirms` sets: the guarantee Sundial gives, not a default).

Run as a child process by the harness:
    python -m bench.celery_beat backlog --amqp URL --entries N --seconds T --out FILE
    python -m bench.celery_beat steady  --amqp URL --entries N --seconds T --out FILE
    python -m bench.celery_beat idle    --amqp URL --entries N --seconds T --out FILE
    [--confirms] [--backend db+postgresql://...]

backlog: N entries due at once; counts publishes (until N or T seconds).
steady:  N entries every second with spread phases; records publish time - due time.
idle:    N entries due in an hour; the loop just sleeps (the harness reads /proc).
Beat's loop is `interval = scheduler.tick(); sleep(interval)`, one due entry per tick
(celery.beat.Service.start), reproduced here so that the run can end once N are sent.

The module is also the Celery app of the bench's Celery workers (`celery -A
bench.celery_beat worker`): `app` reads its broker and result backend from
BENCH_CELERY_BROKER and BENCH_CELERY_BACKEND, and `noop` is the trivial task.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

from celery import Celery
from celery.beat import PersistentScheduler

QUEUE = "bench.celery"
TASK = "bench.noop"


def make_app(amqp_url: str, *, confirms: bool = False, backend: str | None = None) -> Celery:
    """Celery's defaults but for the broker, the queue and (when given) the result backend."""
    app = Celery("bench", broker=amqp_url.replace("amqp://", "pyamqp://", 1), backend=backend)
    if confirms:
        app.conf.broker_transport_options = {"confirm_publish": True}
    app.conf.task_default_queue = QUEUE
    app.conf.worker_hijack_root_logger = False
    app.task(name=TASK)(noop)
    return app


def noop() -> None:
    """The trivial task."""


app = make_app(os.environ.get("BENCH_CELERY_BROKER", "amqp://127.0.0.1"),
               backend=os.environ.get("BENCH_CELERY_BACKEND"))


class CountingScheduler(PersistentScheduler):
    """Beat's in-memory scheduler, noting when each entry was published vs. due."""

    published: list[tuple[float, float]]

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        due = entry.last_run_at + entry.schedule.run_every if entry.last_run_at else None
        result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        now = time.time()
        self.published.append((now, due.timestamp() if due is not None else now))
        return result


def build(amqp_url: str, entries: int, every_s: float, schedule_file: Path, *,
          confirms: bool = False, backend: str | None = None) -> tuple[Celery, CountingScheduler]:
    app = make_app(amqp_url, confirms=confirms, backend=backend)
    app.conf.beat_schedule = {
        f"e{i}": {"task": TASK, "schedule": timedelta(seconds=every_s)} for i in range(entries)
    }
    for suffix in PersistentScheduler.known_suffixes:  # a fresh schedule file
        Path(f"{schedule_file}{suffix}").unlink(missing_ok=True)
    scheduler = CountingScheduler(app, schedule_filename=str(schedule_file))
    scheduler.published = []
    return app, scheduler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("backlog", "steady", "idle"))
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--entries", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--confirms", action="store_true", help="confirm_publish (not a default)")
    parser.add_argument("--backend", help="result backend URL (Celery's default: none)")
    args = parser.parse_args()

    every = {"backlog": 3600.0, "steady": 1.0, "idle": 3600.0}[args.mode]
    app, scheduler = build(args.amqp, args.entries, every, Path(args.out).with_suffix(".schedule"),
                           confirms=args.confirms, backend=args.backend)
    now = app.now()
    ours = [scheduler.schedule[f"e{i}"] for i in range(args.entries)]
    for i, entry in enumerate(ours):
        if args.mode == "backlog":
            entry.last_run_at = now - timedelta(seconds=every + 1)
        elif args.mode == "steady":
            # Phases spread over the second, first slots two seconds from now.
            entry.last_run_at = now + timedelta(seconds=1 + i / args.entries)
        else:
            entry.last_run_at = now
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    ready = time.time()
    deadline = ready + args.seconds
    while not stop and time.time() < deadline:
        if args.mode == "backlog" and len(scheduler.published) >= args.entries:
            break
        interval = scheduler.tick()
        if interval and interval > 0:
            time.sleep(min(interval, max(0.0, deadline - time.time())))
            if scheduler.should_sync():
                scheduler._do_sync()
    with open(args.out, "w") as f:
        json.dump({"ready": ready, "ended": time.time(), "published": scheduler.published}, f)
    scheduler.close()


if __name__ == "__main__":
    main()
