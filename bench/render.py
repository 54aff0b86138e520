"""Render docs/benchmarks.md and docs/benchmarks.png from a results file.

Everything in the page comes from the JSON; the only hand-written text is the
methodology and, for a missed target, WHY (where the time goes, with the run's figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import drain, outbox, scale, trigger
from bench.infra import ROOT
from bench.stats import ratio

DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks.png"
PEERS = (("apscheduler", "APScheduler 4"), ("celery_beat", "Celery beat 5"),
         ("procrastinate", "procrastinate"))

# Where the time goes when a target is missed: what profiling showed (py-spy, see
# `python -m bench.profile`), with placeholders filled from the run's own results.
WHY: dict[str, str] = {
    "dispatch rate": (
        "one `sundial scheduler` is CPU-bound on its core while it clears a backlog "
        "(`python -m bench.profile dispatch`), and shares the machine's two cores with "
        "PostgreSQL and RabbitMQ. Publishing is already batched (250 messages per socket write "
        "under one channel lock, confirms settled by aiormq's reader); what remains is the "
        "tick's SQL and schedule math, `encode_run`, and the servers' own share."),
    "end-to-end rate": (
        "the machine is CPU-bound: every process shares 2 cores with PostgreSQL and RabbitMQ, "
        "and going from 1 to 4 workers barely moves the rate. With one worker, this run's "
        "Sundial processes used worker {worker_cpu:.1f} s and scheduler {scheduler_cpu:.1f} s "
        "of CPU (`/proc/<pid>/stat`); the rest of the two cores went to PostgreSQL and "
        "RabbitMQ. Claims are pipelined per batch of "
        "prefetched messages and results written per batch with `multiple` acks; what remains "
        "per run in the worker is aio-pika's delivery handling, decoding the message and one "
        "task per run."),
    "trigger latency": (
        "most of it is the broker: RabbitMQ's own publish -> deliver, used as Sundial uses it "
        "(confirms, a durable quorum queue, the worker's prefetch), is {floor:.1f} ms p50 in "
        "the same run, so Sundial adds {overhead:.1f} ms p50. Its split: call -> request on "
        "the wire p50 {call_wire:.1f} ms (httpx), -> run inserted {wire_ins:.1f} ms (HTTP, "
        "the route, one INSERT of run and audit row that finds the job itself), -> message "
        "on the broker {ins_broker:.1f} ms, -> worker start {broker_start:.1f} ms (the quorum "
        "queue's delivery, then one claim statement). At light load every hop also pays "
        "for waking an idle process."),
    "trigger overhead over RabbitMQ": (
        "what Sundial adds to the broker's own latency is the client's work (httpx, "
        "{call_wire:.1f} ms p50 to put the request on the wire), the request's handling and "
        "the run's one INSERT round trip (its commit does not wait for the WAL flush: the "
        "answer does), and the worker's claim statement: on the way to the worker the path "
        "wakes the API, PostgreSQL, the API again and the worker where RabbitMQ alone wakes "
        "one consumer, and on a loaded machine each wake-up waits for a core (load average "
        "{load:.1f} on 2 cores in this run)."),
    "fire lag (steady)": (
        "{passes_per_s:.0f} passes/s; the lag splits into slot -> tick "
        "(`runs.created_at - scheduled_for`, p50 {tick_p50:.0f} ms, p99 {tick_p99:.0f} ms) and "
        "tick -> published (p50 {pub_p50:.0f} ms, p99 {pub_p99:.0f} ms). Publishing runs in "
        "tasks of its own, and a pass that claimed while more slots fell due is followed 3 ms "
        "later; what remains is the broker's confirm latency (a quorum queue confirms once the "
        "message is on disk) and the load of the shared machine."),
    "fire lag while a million-run outbox drains": (
        "the lag splits into slot -> tick's commit (p99 {drain_tick_p99:.0f} ms) and commit -> "
        "confirm recorded (p99 {drain_pub_p99:.0f} ms); the same schedules with an empty "
        "outbox had p99 {drain_empty_p99:.0f} ms in this run (the machine's share, without a "
        "backlog). Fresh batches go first: the relay waits for the tick's batches in "
        "flight before each of its own and takes 100 runs at a time while they flow."),
    "steady due-rate held with fire lag p99 <= 100 ms": (
        "on 2 cores RabbitMQ at its ceiling takes most of the machine, and Sundial's "
        "scheduler (about a third of a core at these rates) and PostgreSQL (about as much: "
        "one INSERT into `runs` and its ~14 indexes per run, then the mark published) need "
        "the rest; the steady table above gives each load's scheduler CPU. "
        "`python -m bench.profile dispatch`: publishing (aiormq's framing and confirm "
        "handling) is about 40 % of the scheduler's samples, planning 6 %, asyncpg 8 %. "
        "`python -m bench.cpu`: CPU per 10,000 runs dispatched, scheduler plus its "
        "PostgreSQL sessions. What would move it: fewer indexes written per run, batches "
        "that grow while the scheduler is behind, several relay batches in flight."),
    "dashboard": (
        "the calls over are listed; each call's p99 is its worst of 60 requests, so one "
        "stall of the machine (the no-database floor's p99 is in the table) decides it; the "
        "EXPLAIN columns give the query's own time and buffers."),
}


# The rows under the trigger latency: its overhead over the broker, the broker's own
# latency in the same run, and the split of Sundial's (bench/trigger.py).
TRIGGER_SPLIT = (
    ("trigger overhead over RabbitMQ, p50", ("overhead", "p50_ms"), "Sundial - RabbitMQ alone"),
    ("trigger overhead over RabbitMQ, p99", ("overhead", "p99_ms"), "Sundial - RabbitMQ alone"),
    ("RabbitMQ alone: publish -> deliver, p50", ("floor", "p50_ms"),
     "confirms, quorum queue, prefetch 10; interleaved"),
    ("RabbitMQ alone: publish -> deliver, p99", ("floor", "p99_ms"),
     "confirms, quorum queue, prefetch 10; interleaved"),
    ("of which call -> request on the wire, p50", ("breakdown", "call_to_wire", "p50_ms"),
     "httpx trace"),
    ("of which wire -> run inserted, p50", ("breakdown", "wire_to_inserted", "p50_ms"),
     "runs.created_at"),
    ("of which inserted -> on the broker, p50", ("breakdown", "inserted_to_broker", "p50_ms"),
     "a tap queue beside the worker's"),
    ("of which on the broker -> worker start, p50", ("breakdown", "broker_to_started", "p50_ms"),
     "runs.started_at"),
)


def _why(measure: str, results: dict) -> str | None:
    text = WHY.get(measure) or WHY.get(measure.split(" over ")[0])
    steady = _get(results, "measures", "fire_lag", "steady", "sundial") or {}
    fields = {"passes_per_s": steady.get("passes_per_s") or 0,
              "tick_p50": _get(steady, "breakdown", "slot_to_tick", "p50_ms") or 0,
              "tick_p99": _get(steady, "breakdown", "slot_to_tick", "p99_ms") or 0,
              "pub_p50": _get(steady, "breakdown", "tick_to_published", "p50_ms") or 0,
              "pub_p99": _get(steady, "breakdown", "tick_to_published", "p99_ms") or 0}
    split = _get(results, "measures", "trigger", "sundial", "breakdown") or {}
    one_worker = _get(results, "measures", "end_to_end", "sundial", "1") or {}
    trigger_run = _get(results, "measures", "trigger", "sundial") or {}
    fields.update(wire_ins=_get(split, "wire_to_inserted", "p50_ms") or 0,
                  call_wire=_get(split, "call_to_wire", "p50_ms") or 0,
                  ins_broker=_get(split, "inserted_to_broker", "p50_ms") or 0,
                  broker_start=_get(split, "broker_to_started", "p50_ms") or 0,
                  overhead=_get(trigger_run, "overhead", "p50_ms") or 0,
                  load=(_get(results, "machine", "load_average") or [0])[0],
                  floor=_get(trigger_run, "floor", "p50_ms") or 0,
                  worker_cpu=sum(one_worker.get("worker_cpu_s") or [0]),
                  scheduler_cpu=one_worker.get("scheduler_cpu_s") or 0)
    drained = _get(results, "measures", "drain") or {}
    fields.update(
        drain_tick_p99=_get(drained, "fresh_lag", "breakdown", "slot_to_tick", "p99_ms") or 0,
        drain_pub_p99=_get(drained, "fresh_lag", "breakdown", "tick_to_published", "p99_ms") or 0,
        drain_empty_p99=_get(drained, "empty_outbox", "fresh_lag", "p99_ms") or 0)
    return text.format(**fields) if text else None


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _x(value: float | None) -> str:
    return "-" if value is None else (f"{value:,.1f}x" if value < 100 else f"{value:,.0f}x")


def _best_e2e(m: dict) -> tuple[str | None, float | None]:
    rates = {w: r.get("rate_per_s") for w, r in (_get(m, "end_to_end", "sundial") or {}).items()}
    rates = {w: r for w, r in rates.items() if r}
    if not rates:
        return None, None
    w = max(rates, key=rates.get)
    return w, rates[w]


def targets(results: dict) -> list[dict]:
    """The issue's targets, each with the measured value and whether it was met."""
    m = results.get("measures", {})
    out: list[dict] = []

    def add(measure: str, target: str, value: str, met: bool | None) -> None:
        out.append({"measure": measure, "target": target, "measured": value, "met": met,
                    "why": _why(measure, results) if met is False else None})

    if "dispatch" in m:
        s = _get(m, "dispatch", "sundial", "rate_per_s")
        peers = [p for p in (_get(m, "dispatch", k, "rate_per_s") for k, _ in PEERS) if p]
        fastest = max(peers) if peers else None
        r = ratio(s, fastest)
        add("dispatch rate", ">= 5,000 runs/s and >= 10x the faster peer",
            f"{_fmt(s)} runs/s, {_x(r)} the faster peer",
            None if s is None or r is None else s >= 5000 and r >= 10)
    if "end_to_end" in m:
        w, s = _best_e2e(m)
        a = _get(m, "end_to_end", "apscheduler", w or "", "rate_per_s")
        r = ratio(s, a)
        add("end-to-end rate", ">= 2,000 runs/s and >= 25x APScheduler 4",
            f"{_fmt(s)} runs/s ({w} workers), {_x(r)} APScheduler 4 with {w}",
            None if s is None or r is None else s >= 2000 and r >= 25)
    if "trigger" in m:
        t = _get(m, "trigger", "sundial") or {}
        p50, p99 = t.get("p50_ms"), t.get("p99_ms")
        add("trigger latency", "p50 <= 5 ms, p99 <= 20 ms",
            f"p50 {_fmt(p50, 1)} ms, p99 {_fmt(p99, 1)} ms (from the client's call)",
            None if p50 is None or p99 is None else p50 <= 5 and p99 <= 20)
        over, floor = t.get("overhead") or {}, t.get("floor") or {}
        add("trigger overhead over RabbitMQ", "p50 <= 1.5 ms",
            f"p50 {_fmt(over.get('p50_ms'), 1)} ms, p99 {_fmt(over.get('p99_ms'), 1)} ms "
            f"(RabbitMQ alone: p50 {_fmt(floor.get('p50_ms'), 1)} ms)",
            None if over.get("p50_ms") is None else over["p50_ms"] <= 1.5)
    if "fire_lag" in m:
        p99 = _get(m, "fire_lag", "steady", "sundial", "p99_ms")
        add("fire lag (steady)", "p99 <= 50 ms", f"p99 {_fmt(p99, 1)} ms",
            None if p99 is None else p99 <= 50)
    if "drain" in m:
        p99 = _get(m, "drain", "fresh_lag", "p99_ms")
        add("fire lag while a million-run outbox drains", "p99 <= 1 s",
            f"p99 {_fmt(p99, 1)} ms (empty outbox: "
            f"{_fmt(_get(m, 'drain', 'empty_outbox', 'fresh_lag', 'p99_ms'), 1)} ms)",
            None if p99 is None else p99 <= 1000)
    if "steady" in m and "error" not in m["steady"]:
        share = _get(m, "steady", "held_vs_ceiling")
        add("steady due-rate held with fire lag p99 <= 100 ms", ">= 80 % of RabbitMQ's ceiling",
            f"{_fmt(_get(m, 'steady', 'held_rate_per_s'))} runs/s, "
            f"{_fmt((share or 0) * 100)} % of {_fmt(_get(m, 'steady', 'ceiling', 'rate_per_s'))}"
            " messages/s" if share is not None else "no rate of the ladder held",
            share is not None and share >= 0.8)
    if "history" in m and "error" not in m["history"]:
        h = m["history"]
        over = [name for name, c in h["calls"].items() if (c["p99_ms"] or 0) > h["target_p99_ms"]]
        add(f"dashboard over {h['runs']:,} runs", f"every call p99 <= {h['target_p99_ms']:.0f} ms",
            f"{len(h['calls']) - len(over)} of {len(h['calls'])} calls within"
            + (f"; over: {', '.join(over)}" if over else ""), not over)
    if "scale" in m:
        sizes = {int(k): v for k, v in (_get(m, "scale", "sundial") or {}).items() if "error" not in v}
        if sizes:
            big, small = sizes[max(sizes)], sizes[min(sizes)]
            growth = ratio(big.get("tick_ms"), small.get("tick_ms"))
            label = f"idle with {max(sizes):,} schedules"
            add(label, "scheduler <= 0.5 % of a core, RSS <= 60 MB; tick cost <= 1.5x at 10k",
                f"{_fmt(big['cpu_core_pct'], 2)} % of a core, RSS {_fmt(big['rss_mb'], 1)} MB, "
                f"tick {_x(growth)} the {min(sizes):,} one",
                big["cpu_core_pct"] <= 0.5 and big["rss_mb"] <= 60
                and growth is not None and growth <= 1.5)
    return out


def _row(name: str, unit: str, s: Any, peers: list[Any], higher_better: bool, what: str,
         digits: int = 0) -> str:
    cells = [_fmt(s, digits)]
    ratios = []
    for p in peers:
        if isinstance(p, str):
            cells.append(p)
            ratios.append("n/a")
            continue
        cells.append(_fmt(p, digits))
        r = ratio(s, p) if higher_better else ratio(p, s)
        ratios.append(_x(r))
    return f"| {name} ({unit}) | " + " | ".join(cells + ratios) + f" | {what} |"


def _what(*sides: tuple[str, str | None], cmd: str | None = None) -> str:
    """The last column: what each side's figure counts, then Sundial's command."""
    text = "; ".join(f"**{who}**: {what}" for who, what in sides if what)
    return text + (f"; `{cmd}`" if cmd else "")


def _peer(m: dict, path: tuple[str, ...], key: str) -> Any:
    d = _get(m, *path)
    if d is None:
        return "not measured"
    if "not_applicable" in d:
        return "n/a: " + d["not_applicable"]
    if "error" in d:
        return "failed: " + d["error"][:80]
    return d.get(key)


# Column heads: Celery is beat alone where the measure is the scheduler's, beat + a
# prefork worker end to end; procrastinate's deferrer runs in a worker process.
SYSTEMS = ("Sundial", "APScheduler 4", "Celery 5", "procrastinate")


def _behind(lag: dict | None) -> str | None:
    """A cell for a steady run in which not one slot of the window was handed over."""
    if not lag or lag.get("count") != 0 or not lag.get("expected_slots"):
        return None
    pace = lag.get("deferred_per_s")
    return ("none of the window's slots in time" +
            (f" (it handed over {pace:,.0f}/s, {lag['schedules']:,}/s were due)" if pace else ""))


def results_table(results: dict) -> list[str]:
    m = results["measures"]
    peers = SYSTEMS[1:]
    lines = ["| measure | " + " | ".join(SYSTEMS) + " | "
             + " | ".join(f"Sundial vs {p}" for p in peers) + " | what each figure counts |",
             "|---|" + "---:|" * (len(SYSTEMS) + len(peers)) + "---|"]
    if "dispatch" in m:
        d = m["dispatch"]
        due = {k: _fmt(_get(d, k, "schedules") or _get(d, k, "entries"))
               for k in ("sundial", "apscheduler", "celery_beat", "procrastinate")}
        lines.append(_row("dispatch rate", "per s", _get(d, "sundial", "rate_per_s"),
                          [_peer(d, ("apscheduler",), "rate_per_s"),
                           _peer(d, ("celery_beat",), "rate_per_s"),
                           _peer(d, ("procrastinate",), "rate_per_s")], True,
                          _what(("S", f"{due['sundial']} due: runs recorded + messages confirmed "
                                      "by RabbitMQ"),
                                ("A", f"{due['apscheduler']} due: jobs created in its data "
                                      "store, none executed"),
                                ("C", f"beat, {due['celery_beat']} entries due: messages sent, "
                                      "not confirmed (default)"),
                                ("P", f"{due['procrastinate']} periodic tasks due: jobs "
                                      "deferred into its table, none executed"),
                                cmd=_get(d, "sundial", "command"))))
        if "celery_beat_confirms" in d:
            lines.append(_row("dispatch rate, beat with `confirm_publish` (not a default)", "per s",
                              _get(d, "sundial", "rate_per_s"),
                              ["-", _peer(d, ("celery_beat_confirms",), "rate_per_s"), "-"],
                              True, _what(("S", "as above"),
                                          ("C", "messages confirmed by RabbitMQ, like Sundial's"))))
    if "end_to_end" in m or "e2e_peers" in m:
        e, p = m.get("end_to_end", {}), m.get("e2e_peers", {})
        for w in sorted(set(e.get("sundial", {})) | set(p.get("celery", {})), key=int):
            plural = "s" if w != "1" else ""
            lines.append(_row(
                f"end-to-end, {w} worker{plural}", "runs/s", _get(e, "sundial", w, "rate_per_s"),
                [_peer(e, ("apscheduler", w), "rate_per_s"), _peer(p, ("celery", w), "rate_per_s"),
                 _peer(p, ("procrastinate", w), "rate_per_s")], True,
                _what(("all", "due runs executed by a no-op and recorded as succeeded, from the "
                              "scheduling process's start to the last result"),
                      ("S", f"{w} worker process{'es' if plural else ''} x 100 concurrent"),
                      ("A", f"{w} role-worker process{'es' if plural else ''} x 100"),
                      ("C", f"beat (no confirms) + 1 prefork worker of {w} child"
                            f"{'ren' if plural else ''}, PostgreSQL result backend"),
                      ("P", f"deferring worker + {w} worker process{'es' if plural else ''} x 100"),
                      cmd=_get(e, "sundial", w, "command"))))
    if "trigger" in m:
        t = m["trigger"]
        for p in ("p50", "p95", "p99"):
            lines.append(_row(f"trigger latency {p}", "ms", _get(t, "sundial", f"{p}_ms"),
                              [_peer(t, ("apscheduler",), f"{p}_ms"), "n/a: no run-now in beat",
                               "not measured"], False,
                              _what(("S", "the client's call (httpx) -> worker start"),
                                    ("A", "add_job -> job started"),
                                    cmd=_get(t, "sundial", "command")), 1))
        for name, path, source in TRIGGER_SPLIT:
            lines.append(_row(name, "ms", _get(t, "sundial", *path), ["-", "-", "-"],
                              False, _what(("S", source)), 1))
    if "fire_lag" in m or "e2e_peers" in m:
        f, p = m.get("fire_lag", {}), m.get("e2e_peers", {})
        lag_what = _what(("S", "published (confirmed) - slot, phases spread"),
                         ("A", "JobAcquired - slot"),
                         ("C", "beat's publish (no confirms) - due, phases spread; "
                               "the worker plays no part"),
                         ("P", "job deferred - slot, all on the second"),
                         cmd=_get(f, "steady", "sundial", "command"))
        for q in ("p50", "p99"):
            lines.append(_row(f"fire lag, steady, {q}", "ms", _get(f, "steady", "sundial", f"{q}_ms"),
                              [_peer(f, ("steady", "apscheduler"), f"{q}_ms"),
                               _peer(f, ("steady", "celery_beat"), f"{q}_ms"),
                               _behind(p.get("procrastinate_lag")) or
                               _peer(p, ("procrastinate_lag",), f"{q}_ms")], False, lag_what, 1))
        lines.append(_row("fire lag, steady, slots missed", "count",
                          _get(f, "steady", "sundial", "missed_or_unpublished"),
                          [_peer(f, ("steady", "apscheduler"), "missed_or_unpublished"),
                           _peer(f, ("steady", "celery_beat"), "missed_or_unpublished"),
                           _peer(p, ("procrastinate_lag",), "missed_or_unpublished")],
                          False, _what(("all", "slots of the window never handed over by its end"))))
    if "fire_lag" in m:
        f = m["fire_lag"]
        burst_n = _get(f, "burst", "sundial", "schedules")
        s_clear = _get(f, "burst", "sundial", "clear_s")
        est, vs = [], []
        for key in ("apscheduler", "celery_beat", "procrastinate"):
            r = _get(m, "dispatch", key, "rate_per_s")
            est.append(f"~{burst_n / r:,.0f} (from its dispatch rate)" if r and burst_n else "-")
            vs.append(_x(ratio(burst_n / r, s_clear)) if r and burst_n and s_clear else "-")
        what = _what(("S", "last published_at - the instant"), ("peers", "estimated"),
                     cmd=_get(f, "burst", "sundial", "command"))
        lines.append(f"| burst of {_fmt(burst_n)} due at once, time to clear (s) | {_fmt(s_clear, 2)} "
                     f"| {' | '.join(est)} | {' | '.join(vs)} | {what} |")
    if "scale" in m:
        sc = m["scale"]
        aps = next(iter((_get(sc, "apscheduler") or {}).items()), None)
        beat = _get(sc, "celery_beat") or {}
        for size, s in sorted((_get(sc, "sundial") or {}).items(), key=lambda kv: int(kv[0])):
            n = int(size)
            if "error" in s:
                lines.append(f"| {n:,} stored schedules | failed: {s['error'][:80]} |||||||")
                continue
            lines.append(f"| tick cost, {n:,} stored (ms: claim + sleep-time query) | "
                         f"{_fmt(s['tick_ms'], 3)} | n/a: not SQL-visible | n/a: in memory | "
                         "not measured | - | - | - "
                         f"| **S**: `EXPLAIN ANALYZE` x{s.get('explain_runs', scale.REPEAT)} after "
                         f"{s.get('explain_warm_up', scale.WARM_UP)} warm-up runs, median |")
            for key, unit, name in (("cpu_core_pct", "% of a core", "idle CPU"),
                                    ("rss_mb", "MB", "RSS")):
                a = (aps[1].get(key) if aps and "error" not in aps[1] and aps[0] == size
                     else f"- (measured at {int(aps[0]):,})" if aps else "-")
                b = beat.get(size, {}).get(key, "-")
                lines.append(_row(f"{name}, {n:,} stored", unit, s.get(key), [a, b, "not measured"],
                                  False, _what(("S", "`sundial scheduler`"), ("A", "role both"),
                                               ("C", "beat alone"),
                                               cmd="/proc/<pid>/stat, /proc/<pid>/status"), 2))
        if aps and "error" not in aps[1]:
            lines.append(f"| APScheduler 4 idle with {int(aps[0]):,} stored: CPU, RSS | - | "
                         f"{_fmt(aps[1]['cpu_core_pct'], 2)} % of a core, "
                         f"{_fmt(aps[1]['rss_mb'], 1)} MB | - | - | - | - | - | `{aps[1]['command']}` |")
    return lines


def outbox_section(results: dict) -> list[str]:
    """Sundial against itself: a pass and the relay with a million-run outbox."""
    o = _get(results, "measures", "outbox")
    if not o:
        return []
    if "error" in o:
        return ["## The outbox at a million runs", "", f"Not measured: {o['error']}", ""]
    empty, full, drain, floor = o["pass_empty_ms"], o["pass_full_ms"], o["drain"], o["broker_floor"]
    runs = f"{o['outbox_runs']:,}"
    return [
        "## The outbox at a million runs", "",
        f"{runs} queued, unpublished runs inserted with SQL ({o['insert_s']:.0f} s, then "
        "`VACUUM ANALYZE`), against the same database with an empty outbox and against "
        "RabbitMQ itself, in the same run (method 6 below).", "",
        "| measure | empty outbox | " + runs + " runs in the outbox | ratio |",
        "|---|---:|---:|---:|",
        f"| a pass's planning: tick of {o['schedules_per_pass']} due schedules + sleep-time "
        f"query, median of {full['passes']} | {empty['p50_ms']:.1f} ms "
        f"({empty['min_ms']:.1f}-{empty['max_ms']:.1f}) | {full['p50_ms']:.1f} ms "
        f"({full['min_ms']:.1f}-{full['max_ms']:.1f}) | {_x(o['pass_ratio'])} |",
        "",
        "| measure | runs/s | vs the faster RabbitMQ rate |",
        "|---|---:|---:|",
        f"| relay drain, one `sundial scheduler` ({drain['published']:,} runs published, "
        f"first to last in {drain['seconds']:.1f} s: stopped after {drain['window_s']:.0f} s, "
        f"it finished the publishing in progress; {drain['scheduler_cpu_s']:.1f} s of CPU) | "
        f"{_fmt(drain['rate_per_s'])} | {o['drain_vs_floor']:.2f} |",
        f"| RabbitMQ publish with confirms, same quorum queue, no database: bare `aiormq` "
        f"({floor['messages']:,} messages of {floor['message_bytes']} bytes, "
        f"{floor.get('bare_in_flight', floor['in_flight'])} in flight) | "
        f"{_fmt(floor['bare_aiormq_per_s'])} | "
        f"{floor['bare_aiormq_per_s'] / floor['rate_per_s']:.2f} |",
        f"| the same through Sundial's publisher alone (the relay's framing, no claim, no "
        f"mark) | {_fmt(floor['sundial_publisher_per_s'])} | "
        f"{floor['sundial_publisher_per_s'] / floor['rate_per_s']:.2f} |",
        "",
        f"With {runs} runs waiting, a pass plans in {_x(o['pass_ratio'])} the time it takes "
        f"with none, and the relay drains at {o['drain_vs_floor']:.2f} times the faster "
        "rate at which the broker took the same messages without a database.",
        "",
    ]


def steady_section(results: dict) -> list[str]:
    """Sundial's steady load against RabbitMQ's own ceiling, measured in the same vhost."""
    m = _get(results, "measures", "steady")
    if not m:
        return []
    if "error" in m:
        return ["## Steady load next to RabbitMQ's ceiling", "", f"Not measured: {m['error']}", ""]
    c, main = m["ceiling"], m["steady"]
    windows = ", ".join(f"{w['in_flight']:,} in flight on {w['channels']} channel(s): "
                        f"{_fmt(w['rate_per_s'])}/s, confirms after "
                        f"{_fmt(w.get('mean_confirm_ms'))} ms on average" for w in c["windows"])
    lines = [
        "## Steady load next to RabbitMQ's ceiling", "",
        f"RabbitMQ's own publish-with-confirms ceiling on the quorum queue, same vhost, a "
        f"consumer draining it (method 8): **{_fmt(c['rate_per_s'])} messages/s** of "
        f"{c['message_bytes']} bytes, the best of {windows}.", "",
        "| steady load | due/s | vs ceiling | lag p50 | lag p99 | max | late or unpublished "
        "| p99 first / last minute | scheduler CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for step in [main, *m["ladder"]]:
        t = step["trend"]
        lines.append(
            f"| {step['schedules']:,} schedules every {step['period_s']:g} s, "
            f"{step['seconds'] - step['warm_up_s']:g} s counted | {_fmt(step['rate_per_s'])} | "
            f"{step['rate_per_s'] / c['rate_per_s']:.2f} | {_fmt(step['p50_ms'], 1)} ms | "
            f"{_fmt(step['p99_ms'], 1) + ' ms' if step['p99_ms'] is not None else 'unpublished'} | "
            f"{_fmt(step['max_ms'], 1)} ms | "
            f"{step['late_or_unpublished']:,} of {step['expected_slots']:,} | "
            f"{_fmt(t['first']['p99_ms'], 1)} / {_fmt(t['last']['p99_ms'], 1)} ms | "
            f"{step['scheduler_cpu_share'] * 100:.0f} % of a core |")
    samples = main.get("samples") or [{"overdue": None, "unpublished": None}]
    lines += ["", f"Backlog under the first load, sampled every 5 s: overdue schedules (slot "
              f"passed over 100 ms ago, not yet claimed) at most "
              f"{_fmt(max((x['overdue'] for x in samples), default=None))}, at the end "
              f"{_fmt(samples[-1]['overdue'])}; created but unpublished runs at most "
              f"{_fmt(max((x['unpublished'] for x in samples), default=None))}, at the end "
              f"{_fmt(samples[-1]['unpublished'])}."]
    held = m.get("held_rate_per_s")
    lines += ["", (f"The highest steady rate held with p99 <= {m['goal_p99_ms']:g} ms: "
                   f"**{_fmt(held)} due/s, {m['held_vs_ceiling']:.2f} of the ceiling**."
                   if held else f"No rate tried held p99 <= {m['goal_p99_ms']:g} ms."), ""]
    return lines


def history_section(results: dict) -> list[str]:
    """Sundial against its own target: the dashboard's calls over a big history."""
    h = _get(results, "measures", "history")
    if not h:
        return []
    title = f"## The dashboard over {h.get('runs', 0):,} runs"
    if "error" in h:
        return [title, "", f"Not measured: {h['error']}", ""]
    calls, target = h["calls"], h["target_p99_ms"]
    lines = [title, "",
             f"`runs` seeded with a year of history ({h['seed_s']:.0f} s), one `sundial api`; "
             f"p99 target {target:.0f} ms per call (method 9 below). EXPLAIN (ANALYZE, BUFFERS) "
             "of each call's query in the last columns.", "",
             "| call | p50 ms | p99 ms | within target | query ms | buffers |",
             "|---|---:|---:|---|---:|---:|"]
    plans = h.get("plans", {})
    names = {"stats": "stats", "metrics": "metrics_runs_by_status", "queues": "list_queues",
             "workers": "list_workers", "jobs": "list_jobs"}
    for name, c in calls.items():
        plan = plans.get(name) or plans.get(names.get(name, ""), {})
        buffers = (plan.get("shared_hit", 0) + plan.get("shared_read", 0)) if plan else None
        lines.append(f"| {name} | {_fmt(c['p50_ms'], 1)} | {_fmt(c['p99_ms'], 1)} | "
                     f"{'yes' if (c['p99_ms'] or 0) <= target else '**no**'} | "
                     f"{_fmt(plan.get('execution_ms'), 1) if plan else '-'} | "
                     f"{_fmt(buffers) if buffers is not None else '-'} |")
    hot, bloat, ret = h["hot"], h["bloat"], h["retention"]
    lines += [
        "",
        f"- HOT: over {hot['load_s']:.0f} s of heartbeats ({hot['heartbeats']:,}) and status "
        f"changes ({hot['status_changes']:,}), {hot['hot_updates']:,} of {hot['updates']:,} "
        f"updates of `runs` were heap-only ({_fmt((hot['hot_ratio'] or 0) * 100)} %).",
        f"- Retention: {ret['deleted']:,} runs deleted in {ret['seconds']:.1f} s, "
        f"{_fmt(ret['rate_per_s'])} runs/s: {_fmt(ret['vs_steady_load'], 1)}x a steady "
        "5,000 new runs/s.",
        f"- Bloat after a {bloat['window_s']:.0f} s load window (not an hour): pgstattuple "
        f"says {_fmt(bloat['dead_tuple_percent'], 2)} % dead tuples, "
        f"{_fmt(bloat['free_percent'], 1)} % free space; `runs` with its indexes "
        f"{bloat['total_bytes_before'] / 2**20:,.0f} MB before, "
        f"{bloat['total_bytes_after'] / 2**20:,.0f} MB after.",
        "",
    ]
    return lines


def drain_section(results: dict) -> list[str]:
    """Sundial against itself and the broker: fresh slots while a million-run outbox drains."""
    d = _get(results, "measures", "drain")
    if not d:
        return []
    title = "## After an outage: fresh slots while the outbox drains"
    if "error" in d:
        return [title, "", f"Not measured: {d['error']}", ""]
    lag, empty, floor = d["fresh_lag"], d["empty_outbox"]["fresh_lag"], d["broker_floor"]
    late = lag["unpublished_at_stop"] + lag["not_ticked_at_stop"]

    def lags(x: dict) -> str:
        return (f"{_fmt(x['p50_ms'], 1)} / {_fmt(x['p99_ms'], 1)} / {_fmt(x['max_ms'], 1)} ms "
                f"({x['count']:,} slots)")

    return [
        title, "",
        f"{d['outbox_runs']:,} queued, unpublished runs in the outbox (what a broker outage "
        f"leaves) while {d['fresh_per_s']:,} interval schedules of 1 s, phases spread, keep "
        f"falling due; one `sundial scheduler`, {d['window_s']:.0f} s (method 10 below).", "",
        "| fresh slots' fire lag (`published_at - scheduled_for`) | p50 / p99 / max |",
        "|---|---:|",
        f"| while the outbox drains | {lags(lag)} |",
        f"| same schedules, empty outbox (same run, {d['empty_outbox']['window_s']:.0f} s) | "
        f"{lags(empty)} |",
        f"| while draining: slot -> tick's commit | "
        f"{lags(lag['breakdown']['slot_to_tick'])} |",
        f"| while draining: tick's commit -> confirm recorded | "
        f"{lags(lag['breakdown']['tick_to_published'])} |",
        "",
        "| measure | runs/s | vs the faster RabbitMQ rate |",
        "|---|---:|---:|",
        f"| backlog drained ({d['backlog']['published']:,} runs, first to last in "
        f"{d['backlog']['seconds']:.1f} s) | {_fmt(d['backlog']['rate_per_s'])} | "
        f"{d['backlog_vs_floor']:.2f} |",
        f"| everything published (backlog + fresh, {d['total_published']:,} runs) | "
        f"{_fmt(d['total_rate_per_s'])} | {d['total_vs_floor']:.2f} |",
        f"| RabbitMQ publish with confirms, same queue, no database: bare `aiormq` "
        f"({floor['messages']:,} messages, {floor.get('bare_in_flight', floor['in_flight'])} "
        f"in flight) | {_fmt(floor['bare_aiormq_per_s'])} | "
        f"{floor['bare_aiormq_per_s'] / floor['rate_per_s']:.2f} |",
        f"| the same through Sundial's publisher alone (batches of {floor['in_flight']}) | "
        f"{_fmt(floor['sundial_publisher_per_s'])} | "
        f"{floor['sundial_publisher_per_s'] / floor['rate_per_s']:.2f} |",
        "",
        f"At that rate the whole {d['outbox_runs']:,} take {d['whole_backlog_s'] / 60:.1f} min "
        f"({d['backlog']['left_in_outbox']:,} were left at the stop); "
        f"{late:,} fresh slots were unpublished at the stop (counted with their lag then).",
        "",
    ]


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = results["measures"]
    systems = (("sundial", "Sundial", "#d95f02"), ("apscheduler", "APScheduler 4", "#1b9e77"),
               ("celery_beat", "Celery 5", "#7570b3"), ("procrastinate", "procrastinate", "#e7298a"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = [("dispatch", lambda k: _get(m, "dispatch", k, "rate_per_s"))]
    # End to end, Celery is beat + its worker and procrastinate its workers (e2e_peers).
    e2e = {"sundial": ("end_to_end", "sundial"), "apscheduler": ("end_to_end", "apscheduler"),
           "celery_beat": ("e2e_peers", "celery"), "procrastinate": ("e2e_peers", "procrastinate")}
    for w in sorted(_get(m, "end_to_end", "sundial") or {}, key=int):
        groups.append((f"e2e {w}w", lambda k, w=w: _get(m, *e2e[k], w, "rate_per_s")))
    if _bars(left, groups, systems):
        left.set_yscale("log")
    left.set_ylabel("runs per second (log)")
    left.set_title("Throughput (higher is better)")
    lat = [("trigger p50", lambda k: _get(m, "trigger", k, "p50_ms")),
           ("trigger p99", lambda k: _get(m, "trigger", k, "p99_ms")),
           ("lag p50", lambda k: _lag(m, k, "p50_ms")),
           ("lag p99", lambda k: _lag(m, k, "p99_ms"))]
    if _bars(right, lat, systems):
        right.set_yscale("log")
    right.set_ylabel("milliseconds (log)")
    right.set_title("Latency (lower is better)")
    right.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Sundial vs peers, one run on one machine ({results['date']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _lag(m: dict, key: str, stat: str) -> Any:
    if key == "procrastinate":
        return _get(m, "e2e_peers", "procrastinate_lag", stat)
    return _get(m, "fire_lag", "steady", key, stat)


def _bars(ax, groups, systems) -> bool:
    """Grouped bars; False when there is nothing to draw."""
    drawn = False
    width = 0.8 / len(systems)
    for i, (key, label, color) in enumerate(systems):
        xs, ys = [], []
        for g, (_name, value) in enumerate(groups):
            v = value(key)
            if isinstance(v, (int, float)) and v > 0:
                xs.append(g + (i - (len(systems) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=label, color=color)
        drawn = drawn or bool(ys)
    ax.set_xticks(range(len(groups)), [g[0] for g in groups])
    return drawn


def write(results: dict, source: Path) -> None:
    plot(results, PLOT)
    DOC.write_text(render(results, source))
    print(f"bench: rendered {DOC.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")


def render(results: dict, source: Path) -> str:
    mach, ver = results["machine"], results["versions"]
    load_before, load_after = mach["load_average"], results.get("load_average_after") or []
    shared = max(load_before[:1] + load_after[:1]) >= 0.5
    rel = source.resolve().relative_to(ROOT) if source.resolve().is_relative_to(ROOT) else source
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python -m bench` from [`{rel}`](../{rel}) — do not edit by hand; "
        "re-render with `python -m bench --render <results.json>`.",
        "",
        "Sundial and its peers were measured **in one run on the same machine**; every figure "
        "is read as a ratio against a peer measured in that run. Absolute times on this "
        "shared machine are noise.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "|---|---|",
        f"| run | {results['date']}, `{results['command']}`"
        f"{' (quick sizes)' if results.get('quick') else ''}, {results.get('duration_s', 0):.0f} s |",
        f"| CPU | {mach['cpu']}, {mach['cores']} cores shared by PostgreSQL, RabbitMQ and every "
        "process |",
        f"| memory | {mach['memory_gb']} GB |",
        f"| load average (1, 5, 15 min) | before {', '.join(f'{x:.2f}' for x in load_before)}; "
        f"after {', '.join(f'{x:.2f}' for x in load_after)} |",
        f"| kernel, Python | {mach['kernel']}, {mach['python']} |",
        f"| PostgreSQL, RabbitMQ | {mach['postgresql']}, {mach['rabbitmq']} |",
        f"| Sundial | commit {ver.get('sundial')} |",
        "| peers | " + ", ".join(f"{k} {v}" for k, v in ver.items() if k != "sundial" and v) + " |",
        "",
    ]
    for note in results.get("notes", []):
        lines += [f"**Note:** {note}", ""]
    if shared:
        lines += ["**The machine was not idle around this run** (a one-minute load average of "
                  "0.5 or more, see above: earlier work still winding down, or other work "
                  "beside it), which slows every system alike and adds variance, most visibly "
                  "to latencies.", ""]
    lines += ["## Targets", "", "| measure | target | measured | met |", "|---|---|---|---|"]
    goals = targets(results)
    for t in goals:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['measure']} | {t['target']} | {t['measured']} | {met} |")
    missed = [t for t in goals if t["met"] is False]
    if missed:
        lines += ["", "Where a target is missed, why:", ""]
        for t in missed:
            lines.append(f"- **{t['measure']}**: {t['why'] or 'not yet profiled.'}")
    lines += ["", "## Results", "",
              "Ratios: how many times higher Sundial's rate is, or how many times lower its "
              "latency (peer ÷ Sundial); above 1x Sundial leads. The last column says what "
              "each side's figure counts (**S** Sundial, **A** APScheduler 4, **C** Celery 5, "
              "**P** procrastinate): Celery is beat alone where the measure is the scheduler's "
              "and beat plus a prefork worker end to end; procrastinate has no scheduler "
              "process, its periodic deferrer runs in a worker.", ""]
    lines += results_table(results)
    lines += ["", f"![Throughput and latency, Sundial vs peers]({PLOT.name})", ""]
    lines += outbox_section(results)
    lines += steady_section(results)
    lines += history_section(results)
    lines += drain_section(results)
    lines += _method(results)
    return "\n".join(lines) + "\n"


def _method(results: dict) -> list[str]:
    s = results["sizes"]
    sundial_trigger = _get(results, "measures", "trigger", "sundial") or {}
    pause_ms = sundial_trigger.get("pause_s", trigger.PAUSE_S) * 1000
    sized = next(iter((_get(results, "measures", "scale", "sundial") or {}).values()), {})
    explain_runs = sized.get("explain_runs", scale.REPEAT)
    explain_warm_up = sized.get("explain_warm_up", scale.WARM_UP)
    beat_n = s.get("dispatch_celery", s["dispatch"])
    peers_n = f"{s['e2e_peers']:,}" if "e2e_peers" in s else "-"
    return [
        "## How each figure is measured", "",
        "Reproduce all of it with `make bench` (installs the `bench` extras, then "
        "`python -m bench`); `python -m bench --quick` runs small sizes in a few minutes; "
        "`python -m bench --only dispatch` (or `end_to_end`, `trigger`, `fire_lag`, `scale`, "
        "`outbox`, `e2e_peers`, `steady`, `history`, `drain`) "
        "runs one measure. Each measure gets a PostgreSQL database and a RabbitMQ vhost of its "
        "own, created and dropped by the harness; every process is a real process "
        "(`sundial scheduler`, `sundial worker`, `sundial api`, `python -m bench.aps node`, "
        "`python -m bench.celery_beat`, `celery worker`, `procrastinate worker`), logs in "
        "`bench/logs/`.", "",
        f"1. **Dispatch rate** — Sundial: {s['dispatch']:,} interval schedules due at once, "
        "one `sundial scheduler` with default settings; runs recorded, `next_run_at` advanced "
        "and messages confirmed (checked: every run has `published_at`, every schedule "
        "advanced, the queue holds one message per run), divided by the time from the process "
        "start to the last `published_at`. APScheduler 4: "
        f"{s['dispatch_aps']:,} `DateTrigger` schedules due at once (added through its API; "
        "adding is ~250/s, so the backlog is smaller — the figure is a rate), one process with "
        "role `scheduler` and no worker: jobs created in its data store (`jobs.created_at`, "
        "the rows its workers acquire: its hand-over, like Sundial's published run) per "
        "second from its start; nothing is executed. "
        f"Celery beat 5: {beat_n:,} entries (a large but real beat schedule) due at once, "
        "run as `celery beat` runs it: `PersistentScheduler` (a shelve file) and its "
        "`tick()`/sleep loop, Celery's default settings, so publishing *without* publisher "
        "confirms (kombu's py-amqp transport confirms only with "
        "`broker_transport_options={\"confirm_publish\": True}`); messages sent per second "
        f"from its start (capped at {s['dispatch_celery_cap_s']:.0f} s). Beat compares its "
        "whole schedule on every tick and sends one entry per tick, so its rate falls as "
        "entries grow (an earlier version of this page ran it with 100,000). Measured once "
        "more with `confirm_publish` (not a default, labelled in the table), the guarantee "
        f"Sundial's figure includes. procrastinate: {beat_n:,} periodic tasks (cron every "
        "minute: each one's last slot is due when the process starts) in one `procrastinate "
        "worker` listening to a queue nothing is sent to; jobs deferred (rows in "
        "`procrastinate_jobs`, what its workers fetch) per second, from its start to the last "
        "`deferred` event.",
        f"2. **End-to-end rate** — {s['e2e']:,} due runs (APScheduler: {s['e2e_aps']:,}), "
        "workers started first; from the scheduler's start to the last run recorded as "
        "succeeded by the `noop` handler (APScheduler: `job_results.finished_at`, trivial "
        "function, role-`worker` processes plus one role-`scheduler` process). Worker "
        "concurrency 100 per process on both sides. "
        f"Celery and procrastinate: {peers_n} due runs each (measure 7).",
        f"3. **Trigger latency** — {s['triggers']:,} `POST /api/jobs/{{id}}/trigger` one at a "
        f"time, {pause_ms:.0f} ms apart, after {trigger.WARM_UP} not counted; "
        "`runs.started_at` - the instant httpx was called (as the peers are measured from "
        "their client's call). RabbitMQ's own latency is measured in the same run, one "
        "message after each trigger: used as Sundial uses it (a persistent `mandatory` "
        "message published with confirms to a direct exchange and a durable quorum queue "
        "with Sundial's arguments, a consumer with the worker's prefetch), from the publish "
        "call to the delivery; the overhead is Sundial's figure minus it (p50 and p99). The "
        "split: httpx's trace of the request's first write, `runs.created_at`, the instant "
        "a copy of the message reaches a transient queue bound beside the worker's "
        "(consumed by the bench), `runs.started_at`. APScheduler 4: `add_job` from a "
        "client against one worker process; "
        "`job_results.started_at` - the call (its client is its own library).",
        f"4. **Fire lag** — {s['steady']:,} schedules every second, phases spread over the "
        f"second, for {s['steady_s']:.0f} s (the first 2 s not counted): Sundial "
        "`published_at - scheduled_for`; APScheduler `JobAcquired` - scheduled start; "
        "Celery beat's publish returned (default settings, no confirms) - due; "
        "procrastinate: measure 7. Burst: "
        f"{s['burst']:,} schedules due on one instant while the scheduler idles; time until "
        "the last is published (peers: estimated from their dispatch rate, marked ~).",
        f"5. **Scale and idle** — {', '.join(f'{x:,}' for x in s['scale'])} stored schedules "
        "due in one to two hours, plus 10 due every 10 s, vacuumed and analysed. Tick cost: "
        f"median of {explain_runs} `EXPLAIN ANALYZE` (rolled back, after {explain_warm_up} "
        "unmeasured warm-up runs) of "
        "the claim query (`claim_due_schedules`, batch 500) "
        "plus the sleep-time query (`seconds_until_next_work`), the two statements of every "
        f"pass. Idle CPU over {s['idle_window_s']:.0f} s, once start-up is over (a second "
        "under 50 ms of CPU) and 5 s more, from "
        "`/proc/<pid>/stat` (10 ms resolution), RSS from `/proc/<pid>/status`. Peers idle "
        f"with {s['scale_aps']:,} stored schedules (APScheduler) and "
        f"{', '.join(f'{x:,}' for x in s['scale_celery'])} entries (Celery beat).",
        "6. **The outbox at a million runs** (Sundial alone) — 500 interval schedules "
        "made due before each pass; a pass's planning (`tick`: claim, plan, insert, advance "
        "in one transaction, plus `seconds_until_next_work`) timed in process, median of "
        "30 after 5 untimed, the pass's own runs marked published between passes; first with "
        "an empty outbox, then after the runs were inserted. Then one `sundial scheduler` "
        "relays the outbox for the window: `published_at` count over first to last "
        "`published_at`. RabbitMQ's own rate right after, the scheduler stopped and the "
        "queue purged: `aiormq` `basic_publish` (persistent, `mandatory`, confirms) to "
        f"`sundial.runs`, {outbox.BARE_IN_FLIGHT:,} unconfirmed at every moment (a new one "
        "as soon as one is confirmed), messages padded to the size of a run message; and "
        "Sundial's `Publisher.publish_many` alone, batches of 500 (no database). The drain "
        "is compared with the faster of the two.",
        f"7. **End to end with Celery and procrastinate** — {peers_n} due runs, executed by a "
        "trivial task and recorded as succeeded, per second from the start of the process "
        "that turns schedules into work to the last result. Celery 5: beat as in 1 (default "
        "settings, no confirms) with the entries due at once, and one `celery worker --pool "
        "prefork --concurrency W` (W = the row's worker count: W child processes, one task at "
        "a time each, prefetch multiplier 4, Celery's defaults) consuming first, on the same "
        "RabbitMQ (a vhost of its own); results in PostgreSQL through SQLAlchemy "
        "(`result_backend = db+postgresql://`, psycopg2); the last `date_done` of the SUCCESS "
        "rows of `celery_taskmeta`. procrastinate: W `procrastinate worker --concurrency 100` "
        "processes registered first, then one more worker that knows the periodic tasks (cron "
        "every minute, the last slot due at its start) and executes nothing: its periodic "
        "deferrer stands where Sundial's scheduler does; the last `succeeded` event of the "
        "first slot's jobs (the app's psycopg pool at its default size). Each result also "
        "keeps the rate from the first hand-over (beat's first publish, the first `deferred` "
        "event), start-up left out. Fire lag: that "
        f"deferring worker alone with {s['steady']:,} periodic tasks every second "
        f"(`* * * * * *`: cron has no phases, all fall on the second) for "
        f"{s.get('peers_steady_s', 0):.0f} s, the first 2 s not counted; the job's `deferred` "
        "event - its slot (the deferrer sleeps 0.5 s past each slot by design).",
        f"8. **Steady load next to RabbitMQ's ceiling** (Sundial alone) — in one vhost, "
        "while a bare `aiormq` consumer (one ack per message, its own process) drains the "
        "queue throughout: first RabbitMQ's ceiling, bare `aiormq` `basic_publish` "
        "(persistent, `mandatory`, confirms) to the `sundial.runs` exchange and its quorum "
        "queue, messages the size of a run message, "
        f"{s.get('steady_ceiling_s', 0):g} s at each window of messages in flight (each "
        "publisher awaits its confirm before the next), the best window taken; then "
        f"{s.get('steady_schedules', 0):,} interval schedules every "
        f"{s.get('steady_period_s', 0):g} s, phases spread evenly, under one `sundial "
        f"scheduler` with default settings for {s.get('steady_load_s', 0):g} s (the first "
        "10 s not counted): fire lag `published_at - scheduled_for`, a slot without a "
        "published run by the end counted as infinitely late; overdue schedules and "
        "unpublished runs sampled every 5 s. Then windows of "
        f"{s.get('steady_ladder_s', 0):g} s (schedules every "
        f"{s.get('steady_ladder_period_s', 0):g} s) at fractions of the ceiling, from 0.8 up "
        "by 0.2 while p99 <= 100 ms holds, then halfway between the highest that held (or 0) "
        "and the lowest that did not; the highest that holds is the rate Sundial sustains.",
        f"9. **Years of history** (Sundial alone) — {s.get('history_runs', 0):,} runs written "
        "with set-based SQL over a year (3,000 jobs on 12 queues, most scheduled hourly; 93 % "
        "succeeded, the rest failed, timed out, cancelled, skipped or dead; scheduled, manual, "
        "retry and backfill triggers; the newest few thousand queued or running), indexes "
        "built after, `VACUUM ANALYZE`. One `sundial api`: each GET the dashboard makes, "
        "one at a time with httpx, 60 times after 5 untimed; p50 and p99 per call; then "
        "`EXPLAIN (ANALYZE, BUFFERS)` of its query with the same arguments. HOT: heartbeats "
        "(`heartbeat_runs`) and status changes (`record_results`, a claim's update) of the "
        f"running runs for {s.get('history_load_s', 0):.0f} s; `n_tup_hot_upd / n_tup_upd` "
        "from `pg_stat_user_tables`. Bloat: `pgstattuple('runs')` after that window. "
        "Retention: the scheduler's `delete_old_runs` batches, with a retention that makes "
        "the oldest 200,000 runs old; runs deleted per second.",
        f"10. **After an outage** (Sundial alone) — {s.get('drain_runs', 1_000_000):,} queued, "
        "unpublished runs inserted with SQL as in 6; "
        f"{s.get('drain_fresh', 1_000):,} interval schedules of 1 s (phases spread over the "
        f"second, like 4) set to fall due {drain.LEAD_S:g} s after one `sundial scheduler` "
        f"starts; it relays the outbox and ticks for {s.get('drain_window_s', 120):.0f} s, "
        f"then is stopped. Fire lag of every slot of those schedules from {drain.WARM_UP_S:g} s "
        f"after the first to {drain.TAIL_S:g} s before the stop, enumerated from the "
        "schedules (a slot without a run, or a run unpublished at the stop, counts with its "
        "lag at the stop). Backlog rate: its runs' `published_at` count over first to last; "
        "checked that the queue holds no fewer messages than runs marked published and no "
        "more than runs exist. Before it, as the peer, the same schedules with an empty "
        f"outbox in a database of their own (up to {drain.CONTROL_S:g} s); after it, "
        f"RabbitMQ's own rate as in 6 ({drain.FLOOR_MESSAGES:,} messages each).",
        "",
        "Notes on the peers:",
        "",
        "- APScheduler 4.0.0a6's asyncpg event broker starts a task from asyncpg's NOTIFY "
        "callback, which the installed anyio refuses (events are lost); `bench/aps.py` starts "
        "such callbacks as plain asyncio tasks and changes nothing else.",
        "- Celery is beat alone where the measure is the scheduler's (dispatch, fire lag, "
        "idle) and beat plus a prefork worker with a PostgreSQL result backend end to end; "
        "it has no run-now (`apply_async` bypasses beat), the table says n/a.",
        "- procrastinate has no scheduler process: every worker runs the periodic deferrer for "
        "the periodic tasks its app knows, and the database keeps one job per task, "
        "`periodic_id` and slot. Trigger latency and idle cost are not measured for it.",
    ]
