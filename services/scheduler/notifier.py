"""The delivery of notifications, a loop of the scheduler's own (never the tick's path).

A round claims due notifications (FOR UPDATE SKIP LOCKED, with a lease and the attempt
counted: several schedulers deliver each once), sends them at once through their
channels, and records each outcome in one statement: delivered; pending again after a
backoff that doubles; failed after NOTIFY_MAX_ATTEMPTS or when the channel refuses for
good; suppressed past its rule's `max_per_hour` (decided with the claim, under a lock
of the rule, what other schedulers are sending counted as sent). A scheduler that dies mid-round leaves
its notifications leased: another takes them when the lease runs out (at least once).
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
import prometheus_client as prom

from sundial.core.logging import get_logger
from sundial.core.sql import q
from sundial.scheduler.channels import DeliveryError, Refused, send
from sundial.scheduler.settings import SchedulerSettings

log = get_logger("scheduler.notifier")

SENT = prom.Counter("sundial_notifications_total", "Notification attempts by outcome",
                    ["channel_kind", "outcome"])

BATCH = 50
# A claimed notification is another scheduler's to take after this long past the
# attempt's timeout: never while this one may still be sending it.
LEASE_SLACK_S = 30.0


@dataclass
class Outcomes:
    ids: list[int] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    retry_in_s: list[float] = field(default_factory=list)

    def add(self, notification_id: int, status: str, error: str | None = None,
            retry_in_s: float = 0.0) -> None:
        self.ids.append(notification_id)
        self.statuses.append(status)
        self.errors.append(error)
        self.retry_in_s.append(retry_in_s)


def backoff_s(settings: SchedulerSettings, attempts: int, rng: random.Random) -> float:
    """The wait after the `attempts`-th failed attempt: doubling, capped, +-20 % jitter."""
    base = settings.notify_retry_backoff_s * 2 ** min(attempts - 1, 30)
    return min(base, settings.notify_retry_backoff_max_s) * rng.uniform(0.8, 1.2)


class Notifier:
    def __init__(self, pool: asyncpg.Pool, settings: SchedulerSettings,
                 rng: random.Random | None = None):
        self.pool = pool
        self.settings = settings
        self.rng = rng or random.Random()

    @property
    def lease_s(self) -> float:
        return self.settings.notify_timeout_s * 2 + LEASE_SLACK_S

    async def run_once(self) -> int:
        """One batch: claim, send, record. The number of notifications claimed.

        The claim, the rate limit and the suppressions are one transaction holding a lock
        per rule: schedulers delivering at once decide each rule's limit in turn, each
        counting what the others are sending (leased) as sent."""
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetch(q("claim_notifications"), BATCH, self.lease_s)
            if not claimed:
                return 0
            suppressed = Outcomes()
            to_send = await self._within_rate(conn, claimed, suppressed)
            await self._record(conn, suppressed)
        results = await asyncio.gather(*(self._attempt(row) for row in to_send))
        outcomes = Outcomes()
        for row, error in zip(to_send, results, strict=True):
            self._outcome(row, error, outcomes)
        await self._record(self.pool, outcomes)
        return len(claimed)

    @staticmethod
    async def _record(db: asyncpg.Pool | asyncpg.Connection, outcomes: Outcomes) -> None:
        if outcomes.ids:
            await db.execute(q("record_deliveries"), outcomes.ids, outcomes.statuses,
                             outcomes.errors, outcomes.retry_in_s)

    async def _within_rate(self, conn: asyncpg.Connection, claimed: Sequence[asyncpg.Record],
                           outcomes: Outcomes) -> list[asyncpg.Record]:
        """The notifications to send now; those past their rule's hourly limit (tests
        aside) or whose channel was disabled since are recorded as suppressed."""
        limited = {r["id"] for r in claimed if r["rule_id"] is not None and r["state"] != "test"}
        rules = sorted({r["rule_id"] for r in claimed if r["id"] in limited})
        sent = defaultdict(int)
        if rules:
            await conn.execute(q("lock_rule_rates"), rules)
            ours = [r["id"] for r in claimed]
            for row in await conn.fetch(q("rule_deliveries_last_hour"), rules, ours):
                sent[row["rule_id"]] = row["n"]
        to_send = []
        for row in sorted(claimed, key=lambda r: r["id"]):
            if not row["channel_enabled"] and row["state"] != "test":
                outcomes.add(row["id"], "suppressed", "the channel is disabled")
            elif row["id"] in limited and sent[row["rule_id"]] >= row["max_per_hour"]:
                outcomes.add(row["id"], "suppressed",
                             f"rule {row['rule_name']!r} sent {row['max_per_hour']} in the last "
                             "hour (its max_per_hour)")
                SENT.labels(row["channel_kind"], "suppressed").inc()
            else:
                if row["id"] in limited:
                    sent[row["rule_id"]] += 1
                to_send.append(row)
        return to_send

    async def _attempt(self, row: asyncpg.Record) -> BaseException | None:
        try:
            await asyncio.wait_for(send(row, self.settings), self.settings.notify_timeout_s * 2)
        except (DeliveryError, TimeoutError) as exc:
            return exc
        except Exception as exc:  # a bug: the notification is tried again, the trace logged
            log.exception("notification.send_crashed", notification_id=row["id"])
            return exc
        return None

    def _outcome(self, row: asyncpg.Record, error: BaseException | None, outcomes: Outcomes) -> None:
        fields = {"notification_id": row["id"], "channel": row["channel_name"],
                  "kind": row["event"], "state": row["state"], "attempt": row["attempts"]}
        if error is None:
            outcomes.add(row["id"], "delivered")
            SENT.labels(row["channel_kind"], "delivered").inc()
            log.info("notification.delivered", **fields)
            return
        message = str(error) or type(error).__name__
        if isinstance(error, Refused) or row["attempts"] >= self.settings.notify_max_attempts:
            outcomes.add(row["id"], "failed", message)
            SENT.labels(row["channel_kind"], "failed").inc()
            log.error("notification.failed", error=message, **fields)
            return
        wait_s = backoff_s(self.settings, row["attempts"], self.rng)
        outcomes.add(row["id"], "pending", message, wait_s)
        SENT.labels(row["channel_kind"], "retry").inc()
        log.warning("notification.retry_scheduled", error=message, retry_in_s=round(wait_s, 2),
                    **fields)
