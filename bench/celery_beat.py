"""Celery beat 5 as a peer: its in-memory scheduler and its own service loop, publishing
to the bench's RabbitMQ vhost with publisher confirms (the guarantee Sundial gives).

Run as a child process by the harness:
    python -m bench.celery_beat backlog --amqp URL --entries N --seconds T --out FILE
    python -m bench.celery_beat steady  --amqp URL --entries N --seconds T --out FILE
    python -m bench.celery_beat idle    --amqp URL --entries N --seconds T --out FILE

backlog: N entries due at once; counts confirmed publishes (until N or T seconds).
steady:  N entries every second with spread phases; records publish time - due time.
idle:    N entries due in an hour; the loop just sleeps (the harness reads /proc).
Beat's loop is `interval = scheduler.tick(); sleep(interval)`, one due entry per tick
(celery.beat.Service.start); it is reproduced here without the shelve file.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from datetime import timedelta

from celery import Celery
from celery.beat import Scheduler

QUEUE = "bench.celery"


class CountingScheduler(Scheduler):
    """Beat's in-memory scheduler, noting when each entry was published vs. due."""

    published: list[tuple[float, float]]

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        due = entry.last_run_at + entry.schedule.run_every if entry.last_run_at else None
        result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        now = time.time()
        self.published.append((now, due.timestamp() if due is not None else now))
        return result


def build(amqp_url: str, entries: int, every_s: float) -> tuple[Celery, CountingScheduler]:
    app = Celery("bench", broker=amqp_url.replace("amqp://", "pyamqp://", 1))
    app.conf.broker_transport_options = {"confirm_publish": True}
    app.conf.task_default_queue = QUEUE
    app.conf.beat_schedule = {
        f"e{i}": {"task": "bench.noop", "schedule": timedelta(seconds=every_s)}
        for i in range(entries)
    }
    scheduler = CountingScheduler(app)
    scheduler.published = []
    return app, scheduler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("backlog", "steady", "idle"))
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--entries", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    every = {"backlog": 3600.0, "steady": 1.0, "idle": 3600.0}[args.mode]
    app, scheduler = build(args.amqp, args.entries, every)
    now = app.now()
    for i, entry in enumerate(scheduler.schedule.values()):
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
    with open(args.out, "w") as f:
        json.dump({"ready": ready, "ended": time.time(), "published": scheduler.published}, f)
    scheduler.close()


if __name__ == "__main__":
    main()
