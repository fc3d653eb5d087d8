"""``scripts/plot_training.py``: training logs (JSON lines) to a PNG of loss and AuC curves."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "plot_training.py"


def _load():
    spec = importlib.util.spec_from_file_location("plot_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _write_log(path: Path, best: int | None = None, resumed: bool = False) -> Path:
    lines = [{"event": "start", "step": 0, "message": "training"}]
    for step in range(10, 101, 10):
        lines.append({"event": "step", "step": step, "loss": 5.0 - step / 50, "loss_mean50": 5.1 - step / 50, "lr": 1e-3})
        if step % 20 == 0:
            lines.append({"event": "val", "step": step, "loss": 4.0 - step / 100 + (0.5 if step == 80 else 0),
                          "auc": 0.80 + step / 2000, "auc_gray": 0.83, "psnr": 21.0, "psnr_gray": 22.0,
                          "colourfulness": 12.5})
    if resumed:  # a resumed run repeats step 100: the later record wins
        lines.append({"event": "val", "step": 100, "loss": 2.5, "auc": 0.9, "auc_gray": 0.83, "psnr": 23, "psnr_gray": 22})
    if best is not None:
        lines.append({"event": "best", "step": best, "loss": 3.6})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"event\": \"step\", \"st", encoding="utf-8")
    return path


def test_read_log_best_step_and_resume(tmp_path):
    pt = _load()
    log = pt.read_log(_write_log(tmp_path / "m.log.jsonl", resumed=True))
    assert log.steps == list(range(10, 101, 10)) and log.train_loss[0] == pytest.approx(4.9)
    assert [v["step"] for v in log.val] == [20, 40, 60, 80, 100] and log.val[-1]["loss"] == 2.5
    assert log.best["step"] == 100  # no best event: the lowest held-out loss
    marked = pt.read_log(_write_log(tmp_path / "b.log.jsonl", best=40))
    assert marked.best["step"] == 40
    assert pt.log_path(tmp_path / "m.safetensors") == tmp_path / "m.log.jsonl"


def _records(start: int, steps: range, loss: float) -> list[dict]:
    rows = [{"event": "start", "step": start, "message": "training"}]
    for step in steps:
        rows += [{"event": "step", "step": step, "loss": loss, "loss_mean50": loss},
                 {"event": "val", "step": step, "loss": loss + step / 100, "auc": 0.8}]
    return rows


def test_read_log_plots_the_last_run_whole(tmp_path):
    pt = _load()
    path = tmp_path / "m.log.jsonl"
    # A 100-step run, then a new 30-step run appended to its log: only the new one is plotted.
    old = _records(0, range(10, 101, 10), 9.0) + [{"event": "best", "step": 40, "loss": 9.4}]
    path.write_text("\n".join(json.dumps(r) for r in old + _records(0, range(10, 31, 10), 1.0)) + "\n")
    log = pt.read_log(path)
    assert log.steps == [10, 20, 30] and log.train_loss == [1.0] * 3
    assert [v["step"] for v in log.val] == [10, 20, 30] and log.best["step"] == 10  # not the old run's best
    # Killed at step 60 after a checkpoint at 40, then resumed from 40: the whole run, the resumption's records.
    resumed = _records(0, range(10, 61, 10), 2.0) + _records(40, range(50, 81, 10), 1.0)
    path.write_text("\n".join(json.dumps(r) for r in resumed) + "\n")
    log = pt.read_log(path)
    assert log.steps == list(range(10, 81, 10)) and log.train_loss == [2.0] * 4 + [1.0] * 4


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    pt = _load()
    _write_log(tmp_path / "a.log.jsonl", best=60)
    _write_log(tmp_path / "b.log.jsonl")
    out = tmp_path / "images" / "curves.png"
    code = pt.main([str(tmp_path / "a.log.jsonl"), str(tmp_path / "b.safetensors"), "--label", "first",
                    "-o", str(out)])
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "first:" in text and "step 60" in text and "b:" in text
    assert pt.main([str(tmp_path / "missing.log.jsonl"), "-o", str(out)]) == 2
