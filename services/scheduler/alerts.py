"""The evaluation of notification rules on conditions, a loop of the scheduler's own:
a schedule without a success for too long (dead man's switch), a slot not fired, a
stale scheduler, a queue no worker consumes, an outbox backlog.

Each round, in one transaction that one scheduler at a time holds (an advisory lock),
finds what fires now, opens an alert for each condition that started (and writes its
notification), and closes the alerts of conditions that ended (with a "resolved"
notification). A condition notifies once when it starts and once when it ends, however
many rounds see it. Failed runs are not evaluated here: migration 0011's trigger writes
their notifications with the run's final status.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from sundial.core.logging import get_logger
from sundial.core.notifications import CONDITION_KINDS
from sundial.core.sql import q

log = get_logger("scheduler.alerts")


@dataclass
class Evaluation:
    evaluated: bool = False   # False: another scheduler held the lock
    opened: int = 0
    closed: int = 0


async def evaluate(pool: asyncpg.Pool) -> Evaluation:
    result = Evaluation()
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(q("take_evaluation_lock")):
            return result
        result.evaluated = True
        firing = {}
        for kind in CONDITION_KINDS:
            for row in await conn.fetch(q(f"firing_{kind}")):
                firing[(row["rule_id"], row["subject"])] = row["details"]
        open_now = {(r["rule_id"], r["subject"]) for r in await conn.fetch(q("open_alerts_list"))}
        started = [key for key in firing if key not in open_now]
        ended = [key for key in open_now if key not in firing]
        if started:
            await conn.execute(q("open_alerts"), [k[0] for k in started], [k[1] for k in started],
                               [firing[k] for k in started])
        if ended:
            await conn.execute(q("close_alerts"), [k[0] for k in ended], [k[1] for k in ended])
        result.opened, result.closed = len(started), len(ended)
    for rule_id, subject in started:
        log.warning("alert.opened", rule_id=rule_id, subject=subject)
    for rule_id, subject in ended:
        log.info("alert.closed", rule_id=rule_id, subject=subject)
    return result
