"""The benchmark page's results table: every row says what each side's figure counts,
has a cell per system and ratio, and takes Celery's and procrastinate's end-to-end
figures from their own measure. Also: Celery beat runs with Celery's defaults (no
publisher confirms) unless asked."""

from __future__ import annotations

import pytest

pytest.importorskip("celery")  # the `bench` extra

from bench import celery_beat, render

E2E = {"runs": 100, "rate_per_s": 100.0, "command": "sundial scheduler + 1 x sundial worker"}


def _results() -> dict:
    return {"measures": {
        "dispatch": {"sundial": {"rate_per_s": 1000.0, "command": "sundial scheduler"},
                     "apscheduler": {"rate_per_s": 50.0},
                     "celery_beat": {"rate_per_s": 200.0, "entries": 1000},
                     "celery_beat_confirms": {"rate_per_s": 100.0, "entries": 1000},
                     "procrastinate": {"rate_per_s": 250.0}},
        "end_to_end": {"sundial": {"1": E2E, "2": E2E}, "apscheduler": {"1": {"rate_per_s": 4.0}}},
        "e2e_peers": {"celery": {"1": {"rate_per_s": 25.0}, "2": {"error": "TimeoutError: x"}},
                      "procrastinate": {"1": {"rate_per_s": 40.0}},
                      "procrastinate_lag": {"p50_ms": 600.0, "p99_ms": 900.0,
                                            "missed_or_unpublished": 3}},
        "fire_lag": {"steady": {"sundial": {"p50_ms": 8.0, "p99_ms": 16.0,
                                            "missed_or_unpublished": 0},
                                "apscheduler": {"p50_ms": 80.0, "p99_ms": 160.0,
                                                "missed_or_unpublished": 0},
                                "celery_beat": {"p50_ms": 800.0, "p99_ms": 1600.0,
                                                "missed_or_unpublished": 0}},
                     "burst": {"sundial": {"schedules": 1000, "clear_s": 0.5}}},
    }}


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def test_every_row_has_a_cell_per_column_and_says_what_it_counts():
    lines = render.results_table(_results())
    width = len(_cells(lines[0]))
    assert width == 1 + 4 + 3 + 1
    for line in lines[2:]:
        cells = _cells(line)
        assert len(cells) == width, line
        assert "**" in cells[-1], f"no side named in: {line}"


def test_end_to_end_rows_take_celery_and_procrastinate_from_their_measure():
    rows = {_cells(line)[0]: _cells(line) for line in render.results_table(_results())[2:]}
    one = rows["end-to-end, 1 worker (runs/s)"]
    assert one[1:5] == ["100", "4", "25", "40"]
    assert one[5:8] == ["25.0x", "4.0x", "2.5x"]
    assert "prefork worker of 1 child" in one[-1]
    two = rows["end-to-end, 2 workers (runs/s)"]
    assert two[3].startswith("failed: TimeoutError")
    assert two[4] == "not measured"


def test_dispatch_says_what_each_side_counts_and_labels_confirms():
    rows = {_cells(line)[0]: _cells(line) for line in render.results_table(_results())[2:]}
    dispatch = rows["dispatch rate (per s)"]
    assert dispatch[1:5] == ["1,000", "50", "200", "250"]
    assert "not confirmed (default)" in dispatch[-1]
    assert "none executed" in dispatch[-1]
    confirms = [row for name, row in rows.items() if "confirm_publish" in name]
    assert confirms and "not a default" in confirms[0][0] and confirms[0][3] == "100"
    lag = rows["fire lag, steady, p50 (ms)"]
    assert lag[4] == "600.0" and "all on the second" in lag[-1]


def test_a_peer_that_fell_behind_the_whole_window_says_so():
    results = _results()
    results["measures"]["e2e_peers"]["procrastinate_lag"] = {
        "count": 0, "p50_ms": None, "p99_ms": None, "expected_slots": 8000, "schedules": 1000,
        "missed_or_unpublished": 8000, "deferred_per_s": 61.5}
    rows = {_cells(line)[0]: _cells(line) for line in render.results_table(results)[2:]}
    assert rows["fire lag, steady, p99 (ms)"][4] == (
        "none of the window's slots in time (it handed over 62/s, 1,000/s were due)")
    assert rows["fire lag, steady, slots missed (count)"][4] == "8,000"


def test_without_the_peers_measure_their_cells_say_not_measured():
    results = _results()
    del results["measures"]["e2e_peers"]
    rows = {_cells(line)[0]: _cells(line) for line in render.results_table(results)[2:]}
    assert rows["end-to-end, 1 worker (runs/s)"][3:5] == ["not measured", "not measured"]


@pytest.mark.parametrize("confirms", [False, True])
def test_beat_confirms_only_when_asked(tmp_path, confirms):
    app, scheduler = celery_beat.build("amqp://guest:guest@127.0.0.1:5672/x", 3, 60.0,
                                       tmp_path / "beat", confirms=confirms)
    try:
        options = app.conf.broker_transport_options or {}
        assert options.get("confirm_publish", False) is confirms
        assert type(scheduler).__mro__[1].__name__ == "PersistentScheduler"
        assert {f"e{i}" for i in range(3)} <= set(scheduler.schedule)
    finally:
        scheduler.close()


def test_the_steady_and_history_targets_say_what_held_and_what_did_not():
    results = {"measures": {
        "steady": {"ceiling": {"rate_per_s": 2000.0}, "held_rate_per_s": 1700.0,
                   "held_vs_ceiling": 0.85},
        "history": {"runs": 10_000_000, "target_p99_ms": 50.0,
                    "calls": {"stats": {"p50_ms": 2.0, "p99_ms": 9.0},
                              "runs?status=dead": {"p50_ms": 40.0, "p99_ms": 77.0}}}}}
    by_measure = {t["measure"]: t for t in render.targets(results)}
    steady = by_measure["steady due-rate held with fire lag p99 <= 100 ms"]
    assert steady["met"] is True and steady["measured"] == "1,700 runs/s, 85 % of 2,000 messages/s"
    history = by_measure["dashboard over 10,000,000 runs"]
    assert history["met"] is False
    assert history["measured"] == "1 of 2 calls within; over: runs?status=dead"
    results["measures"]["steady"].update(held_rate_per_s=None, held_vs_ceiling=None)
    steady = {t["measure"]: t for t in render.targets(results)}[
        "steady due-rate held with fire lag p99 <= 100 ms"]
    assert steady["met"] is False and steady["measured"] == "no rate of the ladder held"


@pytest.mark.parametrize("results_file", sorted((render.ROOT / "bench" / "results").glob("*.json")),
                         ids=lambda p: p.name)
def test_every_recorded_run_renders(results_file):
    import json

    page = render.render(json.loads(results_file.read_text()), results_file)
    assert "## Targets" in page and "## How each figure is measured" in page
