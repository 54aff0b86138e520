"""Sundial's benchmarks against its peers (APScheduler 4, Celery beat 5), run by
`make bench` (`python -m bench`); results in bench/results/<date>.json, rendered into
docs/benchmarks.md."""
