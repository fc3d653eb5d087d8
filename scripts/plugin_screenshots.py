"""Take the screenshots of docs/plugin.md from a real napari viewer (no mock-ups).

Opens the widget through the plugin manifest, loads each sample, runs the widget as
the tests do and saves ``viewer.screenshot`` PNGs to ``docs/images/``.

Run headless: ``xvfb-run -a python scripts/plugin_screenshots.py [--model PATH]``.
Without ``--model`` it uses the shipped default model, or -- while that does not
exist -- a random-init compact model (colours then carry no meaning; the figures say so).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def wait(app, widget, timeout: float = 600) -> None:
    deadline = time.perf_counter() + timeout
    while widget.is_running and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    args = parser.parse_args()

    import imageio.v3 as iio
    import napari
    from qtpy.QtWidgets import QApplication

    import napari_colorize as nc
    from napari_colorize.model import resolve_model_path

    import warnings

    from napari_colorize._qt import _widget

    # Fresh widget defaults, and the user's remembered choices left alone.
    private = Path(tempfile.mkdtemp()) / "settings.json"
    _widget.settings_path = lambda: private
    warnings.filterwarnings("ignore", message="napari support for the PyQt5")  # keep toasts out of the shots
    model = args.model
    if model is None:
        try:
            resolve_model_path("default")
            model = "default"
        except FileNotFoundError:
            model = str(nc.save_model(nc.build_model("compact"), Path(tempfile.mkdtemp()) / "random.safetensors"))
            print("the default model is not shipped yet: using a random-init compact model")
    OUT.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])

    for sample, scope, step in (("photograph", "whole stack", None), ("archival_scan", "whole stack", None),
                                ("microscopy_stack", "current slice", 5)):
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1200, 760)
        (source,) = viewer.open_sample("napari-colorize", sample)
        _, widget = viewer.window.add_plugin_dock_widget("napari-colorize", "Colorize")
        if model != "default":
            widget.model_source.value = "from file"
            widget.model_path.value = model
        widget.scope.value = scope
        widget.saturation.value = 1.5
        if step is not None:
            viewer.dims.set_current_step(0, step)
        app.processEvents()
        if sample == "photograph":  # the widget before running
            iio.imwrite(OUT / "widget.png", viewer.screenshot(canvas_only=False, flash=False))
        widget.run_button.clicked()
        wait(app, widget)
        viewer.reset_view()
        app.processEvents()
        iio.imwrite(OUT / f"{sample}_colorized.png", viewer.screenshot(canvas_only=False, flash=False))
        if sample == "photograph":  # the two certainty maps side by side (grid mode)
            viewer.layers[f"{source.name} colorized"].visible = False
            viewer.layers[source.name].visible = False
            viewer.grid.enabled = True
            app.processEvents()
            iio.imwrite(OUT / "certainty_maps.png", viewer.screenshot(canvas_only=True, flash=False))
        viewer.close()
    for path in sorted(OUT.glob("*.png")):
        print(f"{path.relative_to(OUT.parents[1])}: {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
