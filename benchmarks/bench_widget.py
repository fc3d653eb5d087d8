"""Benchmark the Colorize widget in a real (shown) napari viewer.

Prints:
1. a 4096 x 4096 image, output "in memory": time from clicking Run to the first output
   layer in the viewer, to all three, and the longest GUI stall (a 20 ms QTimer probe)
   while the model runs and while the layers are added;
2. a 100-plane lazy (dask) stack, output "lazy": time from Run to the three layers,
   and the time per slice while scrolling (napari computes each plane on demand);
3. ``--only adding``: the adding of a finished ``--size`` squared result alone (no model, a
   few seconds), alternating the widget's way (uint8 colour, pyramid, one hidden layer
   then its reveal per event-loop turn) with napari's plain ``add_image`` of the float32
   arrays one per turn, and the ratio of their longest stalls within the same run.

Run headless: ``xvfb-run -a python benchmarks/bench_widget.py [--model PATH] [--size 4096]``.
Uses the shipped default model if it exists, else a random-init compact model (same
speed as a trained compact model; colours are meaningless) -- the output says which.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def pick_model(path: str | None) -> tuple[str, str]:
    """(model path or "default", description)."""
    import napari_colorize as nc
    from napari_colorize.model.factory import resolve_model_path

    if path:
        return path, path
    try:
        resolve_model_path("default")
        return "default", "default (shipped)"
    except FileNotFoundError:
        out = Path(tempfile.mkdtemp()) / "random_compact.safetensors"
        nc.save_model(nc.build_model("compact"), out)
        return str(out), "random-init compact (the default model is not shipped yet)"


class Probe:
    """Records event-loop ticks every 20 ms."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self) -> Probe:
        self.timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.timer.stop()

    def longest_gap(self, start: float, end: float) -> float:
        t = np.asarray([start, *[x for x in self.ticks if start < x < end], end])
        return float(np.diff(t).max())


def wait(app, widget, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while widget.is_running:
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() > deadline:
            raise TimeoutError("the widget did not finish in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help=".safetensors model (default: shipped or random compact)")
    parser.add_argument("--size", type=int, default=4096, help="edge of the 2D image (pixels)")
    parser.add_argument("--planes", type=int, default=100, help="planes of the lazy stack")
    parser.add_argument("--plane-size", type=int, default=1024, help="edge of each stack plane")
    parser.add_argument("--scroll", type=int, default=6, help="planes to visit while scrolling")
    parser.add_argument("--only", choices=("all", "image", "stack", "adding"), default="all", help="which part to run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of --only adding")
    args = parser.parse_args()

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_colorize._qt import _widget
    from napari_colorize.devices import resolve_device

    # Fresh widget defaults, and the user's remembered choices left alone.
    private = Path(tempfile.mkdtemp()) / "settings.json"
    _widget.settings_path = lambda: private
    model, model_desc = pick_model(args.model)
    print(f"model: {model_desc}; device: {resolve_device('auto')}; torch threads: {torch.get_num_threads()}")
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    _, widget = viewer.window.add_plugin_dock_widget("napari-colorize", "Colorize")
    if model != "default":
        widget.model_source.value = "from file"
        widget.model_path.value = model
    widget.scope.value = "whole stack"

    rng = np.random.default_rng(0)
    if args.only == "adding":
        bench_adding(app, viewer, widget, rng, args.size, args.repeats)
    if args.only in ("all", "image"):
        bench_image(app, viewer, widget, rng, args.size)
    if args.only in ("all", "stack"):
        bench_stack(app, viewer, widget, rng, args.planes, args.plane_size, args.scroll)
    viewer.close()


def run_widget(app, widget, output: str) -> tuple[dict, Probe]:
    """Press Run with the given output mode; return the widget's job timings and the stall probe."""
    widget.output.value = output
    app.processEvents()
    with Probe() as probe:
        widget.run_button.clicked()
        wait(app, widget, 3600)
    return widget._job, probe


def bench_image(app, viewer, widget, rng, size: int) -> None:
    """A large 2D image, output in memory."""
    image = (rng.random((size // 8, size // 8)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    viewer.add_image(image, name="big")
    job, probe = run_widget(app, widget, "in memory")
    print(f"[{size}x{size}] Run -> first layer {job['first_layer_at'] - job['clicked']:.2f} s, "
          f"-> all three {job['layers_at'] - job['clicked']:.2f} s; "
          f"longest GUI stall while computing {probe.longest_gap(job['clicked'], job['computed_at']) * 1000:.0f} ms, "
          f"while adding layers {probe.longest_gap(job['computed_at'], job['layers_at']) * 1000:.0f} ms")
    viewer.layers.clear()


def pump(app, seconds: float) -> None:
    """Let the event loop run (draws, timers) for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def _plain_add(app, viewer, result) -> float:
    """napari's plain way, as the widget did before: one ``add_image`` of the float32 arrays
    per event-loop turn; the longest stall (s)."""
    from qtpy.QtCore import QTimer

    steps = [(result.hue_entropy, {"colormap": "magma"}), (result.chroma_confidence, {"colormap": "viridis"}),
             (result.rgb, {"rgb": True})]
    with Probe() as probe:
        start = time.perf_counter()
        for data, kwargs in steps:
            QTimer.singleShot(0, lambda d=data, k=kwargs: viewer.add_image(d, contrast_limits=(0.0, 1.0), **k))
            pump(app, 0.001)  # one turn each
        pump(app, 1.0)  # their draws
    return probe.longest_gap(start, time.perf_counter())


def _widget_add(app, viewer, widget, result) -> tuple[float, float]:
    """The widget's way, from a finished result; (seconds preparing in the worker, longest stall)."""
    from napari_colorize._qt import _layers, _runner

    start = time.perf_counter()
    tuples = _layers.layer_data_tuples(result, "big", _layers.Geometry((1.0, 1.0), (0.0, 0.0)), {})
    prepared = time.perf_counter() - start
    outcome = _runner.Outcome("done", tuples=tuples, info={"device": "-", "method": "-"})
    with Probe() as probe:
        widget._job = {"name": "big"}
        widget._finish(outcome)
        wait(app, widget, 60)
        pump(app, 1.0)
        end = time.perf_counter()
    return prepared, probe.longest_gap(widget._job["computed_at"], end)


def bench_adding(app, viewer, widget, rng, size: int, repeats: int) -> None:
    """Adding a finished result: the widget's way against napari's plain one, alternately."""
    from napari_colorize import ColorizeResult

    def result_of(side: int) -> ColorizeResult:
        rgb = rng.random((side // 8, side // 8, 3), dtype=np.float32).repeat(8, 0).repeat(8, 1)
        return ColorizeResult(rgb=rgb, chroma_confidence=rgb[..., 0].copy(), hue_entropy=rgb[..., 1].copy())

    # A first, small round unmeasured: napari's first layers of a kind cost extra (imports, shaders).
    small = result_of(64)
    for add in (lambda: _plain_add(app, viewer, small), lambda: _widget_add(app, viewer, widget, small)):
        add()
        viewer.layers.clear()
        pump(app, 0.5)  # draw the cleared canvas before new layers (else the GL driver crashed)
    result = result_of(size)
    plain, ours, prepared = [], [], []
    for _ in range(repeats):
        plain.append(_plain_add(app, viewer, result))
        viewer.layers.clear()
        pump(app, 0.5)
        seconds, stall = _widget_add(app, viewer, widget, result)
        prepared.append(seconds)
        ours.append(stall)
        viewer.layers.clear()
        pump(app, 0.5)
    print(f"[{size}x{size} adding] longest GUI stall, plain float32 add_image: median {np.median(plain) * 1000:.0f} ms "
          f"(max {max(plain) * 1000:.0f}); the widget: median {np.median(ours) * 1000:.0f} ms "
          f"(max {max(ours) * 1000:.0f}); ratio {np.median(ours) / np.median(plain):.2f} over {repeats} rounds; "
          f"preparing in the worker {np.median(prepared):.2f} s")


def bench_stack(app, viewer, widget, rng, n: int, s: int, scroll: int) -> None:
    """A lazy (dask) stack, output lazy."""
    import dask.array as da

    base = (rng.random((s // 8, s // 8)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    stack = da.from_array(base, chunks=base.shape)[None].repeat(n, 0).rechunk((1, s, s))
    stack = stack.map_blocks(lambda b: np.roll(b, 3, axis=-1), dtype=np.uint8)
    viewer.add_image(stack, name="stack", contrast_limits=(0, 255))
    viewer.dims.set_current_step(0, 0)
    job, probe = run_widget(app, widget, "lazy")
    print(f"[{n}x{s}x{s} lazy] Run -> three layers {job['layers_at'] - job['clicked']:.2f} s "
          f"(the displayed plane computed in the worker); "
          f"longest GUI stall {probe.longest_gap(job['clicked'], job['layers_at']) * 1000:.0f} ms")
    times = []
    for z in np.linspace(1, n - 1, scroll).astype(int):
        start = time.perf_counter()
        viewer.dims.set_current_step(0, int(z))
        app.processEvents()
        times.append(time.perf_counter() - start)
    print(f"[{n}x{s}x{s} lazy] per-slice time while scrolling: median {np.median(times):.2f} s, "
          f"max {max(times):.2f} s over {len(times)} planes")
    viewer.layers.clear()


if __name__ == "__main__":
    main()
