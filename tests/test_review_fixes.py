"""Regression tests for defects found in review: each fails on the code before its fix."""
from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import draw_fundus, write_rgb
from retinacli.cli import app
from retinacli.pipeline.config import ProcessConfig
from retinacli.pipeline.run import EXIT_NO_INPUTS, process_inputs


def test_batch_size_zero_is_refused(tmp_path, tiny_model_dir):
    write_rgb(tmp_path / "s" / "a.png", draw_fundus(120, 128))
    res = CliRunner().invoke(app, ["process", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--model",
                                   str(tiny_model_dir), "--batch-size", "0", "--no-hemorrhage", "--no-av"])
    assert res.exit_code == 2
    with pytest.raises(ValueError):
        ProcessConfig([tmp_path / "s"], tmp_path / "o", tiny_model_dir, batch_size=0)


def test_outputs_are_readable_by_others_under_a_normal_umask(tmp_path, tiny_model_dir):
    old = os.umask(0o022)
    try:
        write_rgb(tmp_path / "s" / "a.png", draw_fundus(120, 128))
        process_inputs(ProcessConfig([tmp_path / "s"], tmp_path / "o", tiny_model_dir, progress=False))
    finally:
        os.umask(old)
    for p in [tmp_path / "o" / "report.csv", tmp_path / "o" / "a.png" / "vessels.png"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_half_updated_model_folder_is_refused(tmp_path, tiny_model_dir):
    from retinacli.runtime.artefact import read_model_info

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="sha256"):
        read_model_info(folder)


def test_parity_check_rejects_nan(tmp_path, tiny_checkpoint, tiny_model_dir, monkeypatch):
    from retinacli.export import onnx_export
    from retinacli.runtime.onnxruntime_backend import OnnxRuntimeBackend

    monkeypatch.setattr(OnnxRuntimeBackend, "run", lambda self, b: np.full((len(b), 1, *b.shape[2:]), np.nan, np.float32))
    canv = np.zeros((1, 3, 96, 96), np.uint8)
    with pytest.raises(onnx_export.ParityError, match="non-finite"):
        onnx_export.parity_check(tiny_checkpoint, tiny_model_dir / "model.onnx", canv)


def test_report_never_shows_another_models_rows_as_current(tmp_path, tiny_model_dir):
    scans = tmp_path / "s"
    for i in range(3):
        write_rgb(scans / f"e{i}.png", draw_fundus(120, 128, seed=i))
    out = tmp_path / "o"
    process_inputs(ProcessConfig([scans], out, tiny_model_dir, progress=False))
    other = tmp_path / "m2"
    shutil.copytree(tiny_model_dir, other)
    meta = json.loads((other / "metadata.json").read_text())
    meta["threshold"] = 0.9
    (other / "metadata.json").write_text(json.dumps(meta))
    from retinacli.pipeline.ledger import Ledger

    ledger = Ledger(out / ".retina" / "ledger.sqlite")
    assert ledger.rows("some-other-model") == {}
    assert len(ledger.rows(ledger.conn.execute("SELECT model_key FROM items LIMIT 1").fetchone()[0])) == 3
    ledger.close()


def test_no_inputs_keeps_an_earlier_report(tmp_path, tiny_model_dir):
    write_rgb(tmp_path / "s" / "a.png", draw_fundus(120, 128))
    out = tmp_path / "o"
    process_inputs(ProcessConfig([tmp_path / "s"], out, tiny_model_dir, progress=False))
    before = (out / "report.csv").read_text()
    (tmp_path / "empty").mkdir()
    res = process_inputs(ProcessConfig([tmp_path / "empty"], out, tiny_model_dir, progress=False))
    assert res.exit_code == EXIT_NO_INPUTS
    assert (out / "report.csv").read_text() == before


def test_broken_symlink_is_listed_not_dropped(tmp_path):
    from retinacli.io.discover import discover

    (tmp_path / "s").mkdir()
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "s" / "gone.jpg")
    images, others = discover([tmp_path / "s"])
    assert images == [] and [o.image_id for o in others] == ["gone.jpg"]
