"""The widget's remembered choices: a small JSON file in magicgui's per-user cache folder.

Paths that no longer exist are dropped on loading: a model file that has gone falls
back to the default model, a zarr path whose folder has gone is cleared.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["default_path", "save", "load"]

log = logging.getLogger(__name__)


def default_path() -> Path:
    """Where the widget keeps its choices (magicgui's per-user cache folder)."""
    from magicgui._util import user_cache_dir

    return Path(user_cache_dir()) / "napari_colorize.ColorizeWidget.json"


def save(path: Path, values: dict[str, Any]) -> None:
    """Write ``values`` (paths as strings) atomically; a read-only folder is not an error."""
    plain = {name: str(value) if isinstance(value, Path) else value for name, value in values.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plain))
        tmp.replace(path)
    except OSError:  # a read-only cache folder must not break the widget
        log.debug("could not save napari-colorize settings", exc_info=True)


def load(path: Path) -> dict[str, Any]:
    """The saved values, without paths that no longer exist ({} when there is no valid file)."""
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(values, dict):
        return {}
    model = values.get("model_path")
    if not (model and Path(model).is_file()):
        values.pop("model_path", None)
        if values.get("model_source") == "from file":
            values["model_source"] = "default"
    store = values.get("zarr_path")
    if not (store and str(store) not in ("", ".") and Path(store).parent.is_dir()):
        values.pop("zarr_path", None)
    return values
