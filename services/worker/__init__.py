"""The Sundial worker: consume run messages, execute them, record the results.

`from worker import job` registers a Python function as a job (see docs/handlers.md).
"""

from worker.registry import job

__all__ = ["job"]
