"""What the widget's status line says while a job runs and once its layers are in.

Pure wording from the job's record (the dict the widget keeps while a job runs; no Qt):
the multiscale level coloured, when it is not level 0, is named in every progress update
and in the final status, since the note saying why (:func:`._layers.plan_input`) is
shown only until the first update.
"""

from __future__ import annotations

from typing import Any

__all__ = ["finished", "progress_words"]


def progress_words(job: dict[str, Any], done: int, total: int) -> str:
    """The status while a job runs: "Colorizing slide at multiscale level 1 (…): 3/20".

    ``job["level"]``: :meth:`._layers.InputPlan.level_words` ("" at level 0).
    """
    level = job.get("level")
    return f"Colorizing {job.get('name', '')}{f' at {level}' if level else ''}: {done}/{total}"


def finished(done_message: str, job: dict[str, Any]) -> str:
    """The status once the layers are in: ``done_message`` (what the job did and how, "Colorized
    slide in 13.5 s (cpu, median)"), and the multiscale level it coloured."""
    level = job.get("level")
    return f"{done_message}, at {level}" if level else done_message
