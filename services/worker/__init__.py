"""The Sundial worker: consume run messages, execute them, record the results.

Job authors import from the top: `from sundial import job, current_run` (docs/handlers.md).
"""
