"""What the widget's status line says while a job runs and once its layers are in.

Wording from the job's record (the dict the widget keeps while a job runs): the
multiscale level coloured, when it is not level 0, is named in every progress update and
in the final status, since the note saying why (:func:`._layers.plan_input`) is shown only
until the first update.  With intensities "contrast limits", a change of the input's
contrast limits while the job ran is said in the final status and a notification: the
layers are still added (the data did not change and the work is not lost), coloured with
the limits at Run, and pressing Run again uses the new ones.  So is a move of the input
(scale, translate, rotate, shear, affine) while the job ran: the outputs sit where it was.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

__all__ = ["finished", "limits_at_run", "notify", "progress_words", "transform_at_run"]

#: A job's contrast limits and a weak reference to its input layer (which the job must not
#: keep alive, data and all, once it is deleted).
LimitsRecord = tuple[tuple[float, float], "weakref.ReferenceType[Any]"]
#: A job's input transform (its parts as arrays) and a weak reference to the input layer.
TransformRecord = tuple[list[np.ndarray], "weakref.ReferenceType[Any]"]


def progress_words(job: dict[str, Any], done: int, total: int) -> str:
    """The status while a job runs: "Colorizing slide at multiscale level 1 (…): 3/20".

    ``job["level"]``: :meth:`._layers.InputPlan.level_words` ("" at level 0).
    """
    level = job.get("level")
    return f"Colorizing {job.get('name', '')}{f' at {level}' if level else ''}: {done}/{total}"


def limits_at_run(intensities: str, limits: Any, layer: Any) -> LimitsRecord | None:
    """What a job keeps to tell at its end whether its input's contrast limits changed meanwhile;
    None when its colours do not depend on them (``intensities`` other than "contrast limits")."""
    if intensities != "contrast limits" or limits is None:
        return None
    lo, hi = (float(v) for v in limits)
    return (lo, hi), weakref.ref(layer)


def _limits_changed(job: dict[str, Any]) -> str | None:
    """What to say when the input's contrast limits are not those the job used; None when they are."""
    record: LimitsRecord | None = job.get("limits")
    layer = None if record is None else record[1]()
    if layer is None:
        return None
    (lo, hi), now = record[0], tuple(float(v) for v in layer.contrast_limits)
    if np.allclose(now, (lo, hi)):
        return None
    return (f"{job.get('name', '')} was coloured with the contrast limits it had at Run [{lo:g}, {hi:g}]; "
            f"they are now [{now[0]:g}, {now[1]:g}]: press Run to colour it with them")


def _transform(layer: Any) -> list[np.ndarray]:
    return [np.asarray(layer.scale, float), np.asarray(layer.translate, float), np.asarray(layer.rotate, float),
            np.asarray(layer.shear, float), np.asarray(layer.affine.affine_matrix, float)]


def transform_at_run(layer: Any) -> TransformRecord:
    """What a job keeps to tell at its end whether its input was moved meanwhile."""
    return _transform(layer), weakref.ref(layer)


def _moved(job: dict[str, Any]) -> str | None:
    """What to say when the input's transform is not the one its outputs were placed with; None when it is."""
    record: TransformRecord | None = job.get("transform")
    layer = None if record is None else record[1]()
    if layer is None or all(np.array_equal(a, b) for a, b in zip(record[0], _transform(layer))):
        return None
    return (f"{job.get('name', '')} was moved, scaled or turned while it was coloured: the outputs sit where it was "
            "at Run; press Run to place them over it")


def done_words(job: dict[str, Any], seconds: float, info: dict[str, Any]) -> str:
    """What a job did and how: "Colorized slide in 13.5 s (cpu, median)", and where it wrote a
    zarr store (a path typed without a folder lands in napari's working folder)."""
    done = "Re-coloured" if job.get("live") else "Colorized"
    where = f"; written to {info['written_to']}" if info.get("written_to") else ""
    return f"{done} {job.get('name', '')} in {seconds:.1f} s ({info['device']}, {info['method']}){where}"


def finished(done_message: str, job: dict[str, Any]) -> tuple[str, str | None]:
    """The status once the layers are in, and what to tell in a notification too (None: nothing).

    ``done_message``: what the job did and how ("Colorized slide in 13.5 s (cpu, median)"); the
    multiscale level it coloured, and a change of the contrast limits or a move of the input
    meanwhile, are added.
    """
    level, changed = job.get("level"), "; ".join(filter(None, (_limits_changed(job), _moved(job)))) or None
    status = f"{done_message}, at {level}" if level else done_message
    return (f"{status}; {changed}" if changed else status), changed


def notify(notice: str | None) -> None:
    """Show ``notice`` as a napari notification (the status line is easily missed), if there is one."""
    if notice:
        from napari.utils.notifications import show_info

        show_info(f"napari-colorize: {notice}")
