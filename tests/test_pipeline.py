"""`retina process` as a library call: one row per input, bad files become rows, outputs at input size,
confined writes, resumable runs."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import draw_fundus, write_rgb

from retinacli.pipeline.config import ProcessConfig
from retinacli.pipeline.run import EXIT_NO_INPUTS, EXIT_OK, EXIT_SOME_FAILED, process_inputs
from retinacli.runtime.artefact import sha256_file

GOOD = {  # image id -> (height, width)
    "a.png": (120, 140),
    "b.jpg": (100, 100),
    "c.tif": (150, 130),
    "sub/D.JPG": (110, 96),
}
BAD = ("broken.jpg", "notes.png")


def make_good_folder(root: Path) -> Path:
    for i, (rel, (h, w)) in enumerate(GOOD.items()):
        write_rgb(root / rel, draw_fundus(h, w, seed=i))
    return root


def make_mixed_folder(root: Path) -> Path:
    make_good_folder(root)
    full = (root / "b.jpg").read_bytes()
    (root / "broken.jpg").write_bytes(full[: len(full) // 2])       # truncated JPEG
    (root / "notes.png").write_text("this is not a picture\n")       # text file with an image extension
    (root / "README.txt").write_text("scanner export\n")             # not an image: ignored, but listed
    return root


def run(inputs, out, model, **kw):
    cfg = ProcessConfig(inputs=[Path(p) for p in (inputs if isinstance(inputs, list) else [inputs])],
                        out_dir=Path(out), model=Path(model), progress=False, threads=1, workers=2, **kw)
    return process_inputs(cfg)


def read_report(out: Path) -> list[dict]:
    with (out / "report.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def read_summary(out: Path) -> dict:
    return json.loads((out / "run_summary.json").read_text())


def listing(root: Path, exclude: Path | None = None) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of every file under root (outside ``exclude``)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if exclude is not None and (p == exclude or exclude in p.parents):
            continue
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
        else:
            out[p.relative_to(root).as_posix() + "/"] = (0, 0)
    return out


def output_files(out: Path) -> dict[str, int]:
    """Per-image outputs (not the run-level report/summary/ledger) -> mtime_ns."""
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and ".retina" not in p.parts and p.name not in ("report.csv", "run_summary.json")}


def test_mixed_folder_one_row_per_image_file(tiny_model_dir, tmp_path):
    src = make_mixed_folder(tmp_path / "in")
    out = tmp_path / "out"
    res = run(src, out, tiny_model_dir)
    assert res.exit_code == EXIT_SOME_FAILED == 3
    rows = read_report(out)
    assert sorted(r["image_id"] for r in rows) == sorted([*GOOD, *BAD])  # 6 rows, README.txt not among them
    assert len(rows) == 6
    by_id = {r["image_id"]: r for r in rows}
    for rel in GOOD:
        assert by_id[rel]["status"] == "ok", by_id[rel]
        assert by_id[rel]["reason"] == ""
    for rel in BAD:
        assert by_id[rel]["status"] == "failed"
        assert by_id[rel]["reason"].strip()
    assert by_id["broken.jpg"]["reason"].startswith("truncated")
    assert by_id["notes.png"]["reason"].startswith("not_an_image")

    summary = read_summary(out)
    assert summary["counts"] == {"inputs": 6, "ok": 4, "failed": 2}
    assert res.counts == summary["counts"]
    assert [Path(p).name for p in summary["ignored_non_image_files"]] == ["README.txt"]
    assert [p.name for p in res.ignored] == ["README.txt"]
    assert summary["processed_this_run"] == 6
    assert summary["backend"] == "onnxruntime"
    model = summary["models"]["vessels"]
    assert model["sha256"] == sha256_file(tiny_model_dir / "model.onnx")
    assert model["canvas_px"] == 96 and model["threshold"] == pytest.approx(0.5)
    from retinacli.runtime.cpu_features import has_avx512

    # the graphs ONNX Runtime ran: the image-pair graph on an AVX-512 CPU (model.onnx for an odd batch's last image)
    assert model["files_run"] == (["model.avx512.onnx", "model.onnx"] if has_avx512() else ["model.onnx"])
    assert summary["interrupted"] is False

    # a re-run (resume) retries only the failed inputs; the report still accounts for every file
    res = run(src, out, tiny_model_dir)
    assert res.exit_code == EXIT_SOME_FAILED
    assert read_summary(out)["processed_this_run"] == len(BAD)
    assert len(read_report(out)) == 6


def test_outputs_at_input_resolution_and_binary_masks(tiny_model_dir, tmp_path):
    src = make_good_folder(tmp_path / "in")
    out = tmp_path / "out"
    res = run(src, out, tiny_model_dir)
    assert res.exit_code == EXIT_OK
    rows = {r["image_id"]: r for r in read_report(out)}
    for rel, (h, w) in GOOD.items():
        mask_path, overlay_path = out / rel / "vessels.png", out / rel / "vessels_overlay.jpg"
        assert rows[rel]["outputs"].split(";") == [f"{rel}/vessels.png", f"{rel}/vessels_overlay.jpg"]
        assert (int(rows[rel]["width"]), int(rows[rel]["height"])) == (w, h)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        assert mask is not None and mask.shape == (h, w) and mask.dtype == np.uint8
        assert set(np.unique(mask).tolist()) <= {0, 255}
        overlay = cv2.imread(str(overlay_path), cv2.IMREAD_UNCHANGED)
        assert overlay is not None and overlay.shape == (h, w, 3)
        assert 0.0 <= float(rows[rel]["vessel_density"]) <= 1.0
        # nothing is vessel outside the field of view (image corners are black border)
        assert mask[0, 0] == mask[-1, -1] == 0
        assert not (out / rel / "vessel_probability.png").exists()  # only with --save-probabilities
    assert (out / "sub" / "D.JPG" / "vessels.png").exists()  # id keeps the sub-folder and extension


def test_all_good_folder_exits_zero_and_empty_folder_exits_no_inputs(tiny_model_dir, tmp_path):
    src = make_good_folder(tmp_path / "in")
    assert run(src, tmp_path / "out", tiny_model_dir).exit_code == EXIT_OK == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.txt").write_text("nothing here")
    res = run(empty, tmp_path / "out2", tiny_model_dir)
    assert res.exit_code == EXIT_NO_INPUTS == 4
    assert read_report(tmp_path / "out2") == []
    assert [p.name for p in res.ignored] == ["README.txt"]


def test_missing_input_raises_before_writing(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError):
        run(tmp_path / "nope", tmp_path / "out", tiny_model_dir)
    assert not (tmp_path / "out").exists()


def test_save_probabilities(tiny_model_dir, tmp_path):
    src = tmp_path / "in"
    write_rgb(src / "a.png", draw_fundus(120, 140, seed=0))
    out = tmp_path / "out"
    assert run(src, out, tiny_model_dir, save_probabilities=True, overlay=False).exit_code == EXIT_OK
    prob = cv2.imread(str(out / "a.png" / "vessel_probability.png"), cv2.IMREAD_UNCHANGED)
    assert prob is not None and prob.shape == (120, 140) and prob.dtype == np.uint8
    assert not (out / "a.png" / "vessels_overlay.jpg").exists()
    # the mask is the thresholded probability (threshold 0.5 -> 8-bit 128 boundary, allow rounding)
    mask = cv2.imread(str(out / "a.png" / "vessels.png"), cv2.IMREAD_UNCHANGED) > 0
    assert np.all(prob[mask] >= 127)
    assert read_report(out)[0]["outputs"] == "a.png/vessels.png;a.png/vessel_probability.png"


def test_resume_skips_done_inputs_and_no_resume_redoes_them(tiny_model_dir, tmp_path):
    src = make_good_folder(tmp_path / "in")
    out = tmp_path / "out"
    assert run(src, out, tiny_model_dir).exit_code == EXIT_OK
    assert read_summary(out)["processed_this_run"] == len(GOOD)
    first_report = read_report(out)
    before = output_files(out)
    assert len(before) == 2 * len(GOOD)

    res = run(src, out, tiny_model_dir)
    assert res.exit_code == EXIT_OK
    summary = read_summary(out)
    assert summary["processed_this_run"] == 0
    assert summary["counts"] == {"inputs": len(GOOD), "ok": len(GOOD)}
    assert output_files(out) == before                     # nothing rewritten
    assert read_report(out) == first_report                 # the report still has every row

    run(src, out, tiny_model_dir, resume=False)
    assert read_summary(out)["processed_this_run"] == len(GOOD)
    after = output_files(out)
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] for k in before)       # every output rewritten


def test_changed_input_is_the_only_one_redone(tiny_model_dir, tmp_path):
    src = make_good_folder(tmp_path / "in")
    out = tmp_path / "out"
    run(src, out, tiny_model_dir)
    before = output_files(out)
    # change one input's content (new size and mtime)
    write_rgb(src / "c.tif", draw_fundus(140, 160, seed=42))
    st = (src / "c.tif").stat()
    os.utime(src / "c.tif", ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    run(src, out, tiny_model_dir)
    assert read_summary(out)["processed_this_run"] == 1
    after = output_files(out)
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {"c.tif/vessels.png", "c.tif/vessels_overlay.jpg"}
    assert cv2.imread(str(out / "c.tif" / "vessels.png"), cv2.IMREAD_UNCHANGED).shape == (140, 160)
    row = {r["image_id"]: r for r in read_report(out)}["c.tif"]
    assert (int(row["width"]), int(row["height"])) == (160, 140)


def test_resume_honours_newly_requested_outputs(tiny_model_dir, tmp_path):
    """A resumed run that asks for more outputs (--save-probabilities) than the first one must write them."""
    src = make_good_folder(tmp_path / "in")
    out = tmp_path / "out"
    run(src, out, tiny_model_dir)
    run(src, out, tiny_model_dir, save_probabilities=True)
    assert read_summary(out)["processed_this_run"] == len(GOOD)
    for rel in GOOD:
        assert (out / rel / "vessel_probability.png").exists()
    # asking for fewer outputs than were written is satisfied by what is there
    run(src, out, tiny_model_dir, overlay=False)
    assert read_summary(out)["processed_this_run"] == 0


def test_touching_an_input_redoes_it(tiny_model_dir, tmp_path):
    src = make_good_folder(tmp_path / "in")
    out = tmp_path / "out"
    run(src, out, tiny_model_dir)
    st = (src / "a.png").stat()
    os.utime(src / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, new mtime
    run(src, out, tiny_model_dir)
    assert read_summary(out)["processed_this_run"] == 1


def test_deleted_output_is_redone_on_resume(tiny_model_dir, tmp_path):
    src = make_good_folder(tmp_path / "in")
    out = tmp_path / "out"
    run(src, out, tiny_model_dir)
    (out / "b.jpg" / "vessels.png").unlink()
    run(src, out, tiny_model_dir)
    assert read_summary(out)["processed_this_run"] == 1
    assert (out / "b.jpg" / "vessels.png").exists()


def test_out_folder_inside_input_is_never_an_input(tiny_model_dir, tmp_path):
    src = make_good_folder(tmp_path / "in")
    out = src / "results"
    assert run(src, out, tiny_model_dir).exit_code == EXIT_OK
    assert (out / "a.png" / "vessels.png").exists()
    for resume in (True, False):
        res = run(src, out, tiny_model_dir, resume=resume)
        assert res.exit_code == EXIT_OK
        ids = [r["image_id"] for r in read_report(out)]
        assert sorted(ids) == sorted(GOOD)
        assert not any(i.startswith("results/") for i in ids)
        assert not any("results" in str(p) for p in read_summary(out)["ignored_non_image_files"])
    # also when the out folder is given by a relative path
    cwd = os.getcwd()
    try:
        os.chdir(src)
        res = run(Path("."), Path("results"), tiny_model_dir, resume=False)
    finally:
        os.chdir(cwd)
    assert sorted(r["image_id"] for r in read_report(out)) == sorted(GOOD)


def test_nothing_written_outside_out_dir(tiny_model_dir, tmp_path):
    src = make_mixed_folder(tmp_path / "in")
    out = tmp_path / "out"
    before = listing(tmp_path)
    model_before = listing(tiny_model_dir)
    run(src, out, tiny_model_dir, save_probabilities=True)
    run(src, out, tiny_model_dir, save_probabilities=True)
    assert listing(tmp_path, exclude=out) == before
    assert listing(tiny_model_dir) == model_before
    assert (out / "report.csv").exists()


def test_checkpoint_model_runs_with_torch_backend(tiny_checkpoint, tiny_model_dir, tmp_path):
    src = tmp_path / "in"
    write_rgb(src / "a.png", draw_fundus(120, 140, seed=0))
    res = run(src, tmp_path / "pt", tiny_checkpoint)
    assert res.exit_code == EXIT_OK
    summary = read_summary(tmp_path / "pt")
    assert summary["backend"] == "torch"
    assert summary["models"]["vessels"]["sha256"] == sha256_file(tiny_checkpoint)
    assert summary["models"]["vessels"]["files_run"] == [tiny_checkpoint.name]
    # same weights through ONNX Runtime: the same mask (up to pixels at the threshold)
    run(src, tmp_path / "onnx", tiny_model_dir)
    m1 = cv2.imread(str(tmp_path / "pt" / "a.png" / "vessels.png"), cv2.IMREAD_UNCHANGED)
    m2 = cv2.imread(str(tmp_path / "onnx" / "a.png" / "vessels.png"), cv2.IMREAD_UNCHANGED)
    assert np.mean(m1 != m2) < 0.001


def test_a_new_model_invalidates_resume(tiny_model_dir, tiny_checkpoint, tmp_path):
    src = make_good_folder(tmp_path / "in")
    out = tmp_path / "out"
    run(src, out, tiny_model_dir)
    run(src, out, tiny_checkpoint)  # different artefact (sha256) -> everything is redone
    assert read_summary(out)["processed_this_run"] == len(GOOD)


def test_interrupted_run_still_lists_every_input(tmp_path, tiny_model_dir, monkeypatch):
    import retinacli.pipeline.run as run_mod

    scans = tmp_path / "scans"
    for i in range(6):
        write_rgb(scans / f"e{i}.png", draw_fundus(120, 128, seed=i))
    calls = {"n": 0}
    real = run_mod.finish_item

    def stop_after_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "finish_item", stop_after_two)
    cfg = ProcessConfig([scans], tmp_path / "out", tiny_model_dir, batch_size=1, workers=1, progress=False)
    with pytest.raises(KeyboardInterrupt):
        process_inputs(cfg)
    rows = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert [r["image_id"] for r in rows] == [f"e{i}.png" for i in range(6)]
    assert {r["status"] for r in rows} == {"ok", "pending"}
    assert all("resume" in r["reason"] for r in rows if r["status"] == "pending")
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["interrupted"] is True
    monkeypatch.setattr(run_mod, "finish_item", real)
    assert process_inputs(cfg).exit_code == EXIT_OK


def test_report_carries_the_quality_verdict(tiny_model_dir, tmp_path):
    """Every processed image gets a quality verdict; a dark photo is still processed (mask for review) but is
    ungradable with its reason, and failed inputs carry no verdict."""
    src = tmp_path / "in"
    write_rgb(src / "good.png", draw_fundus(560, 560, seed=1))  # FOV >= 250 px: not low_resolution
    write_rgb(src / "dark.png", (draw_fundus(560, 560, seed=2) * 0.08).astype(np.uint8))
    (src / "broken.png").write_text("not a picture")
    out = tmp_path / "out"
    res = run(src, out, tiny_model_dir)
    assert res.exit_code == EXIT_SOME_FAILED
    rows = {r["image_id"]: r for r in read_report(out)}
    assert rows["dark.png"]["status"] == "ok" and (out / "dark.png" / "vessels.png").exists()
    assert rows["dark.png"]["quality"] == "ungradable"
    assert rows["dark.png"]["quality_reason"].startswith("too_dark:")
    assert "ungradable" in rows["dark.png"]["quality_flags"].split(";")
    assert rows["broken.png"]["quality"] == "" and rows["broken.png"]["status"] == "failed"
    assert float(rows["good.png"]["q_green_mean"]) > float(rows["dark.png"]["q_green_mean"])
    assert rows["good.png"]["quality"] in ("gradable", "ungradable")  # synthetic: the verdict exists


def test_changed_test_time_flips_invalidate_resume(tiny_model_dir, tmp_path):
    """The flips live in metadata.json, not model.onnx (same sha256): switching them on must redo every row."""
    import shutil

    src = make_good_folder(tmp_path / "in")
    out = tmp_path / "out"
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    run(src, out, model)
    meta = json.loads((model / "metadata.json").read_text())
    meta["test_time_flips"] = ["horizontal"]
    (model / "metadata.json").write_text(json.dumps(meta))
    run(src, out, model)
    assert read_summary(out)["processed_this_run"] == len(GOOD)
    run(src, out, model)
    assert read_summary(out)["processed_this_run"] == 0


def test_av_graph_and_biomarker_settings_are_part_of_the_resume_key(tiny_model_dir, tiny_av_dir, tmp_path):
    from retinacli.postprocess.av_labels import AvGraphConfig
    from retinacli.postprocess.biomarkers import BiomarkerConfig

    src = tmp_path / "in"
    write_rgb(src / "a.png", draw_fundus(150, 160, seed=5))
    out = tmp_path / "out"
    assert run(src, out, tiny_model_dir, av_model=tiny_av_dir).exit_code == EXIT_OK
    assert run(src, out, tiny_model_dir, av_model=tiny_av_dir).exit_code == EXIT_OK
    assert read_summary(out)["processed_this_run"] == 0          # same settings: skipped
    assert run(src, out, tiny_model_dir, av_model=tiny_av_dir,
               av_graph_config=AvGraphConfig(min_confidence=0.9)).exit_code == EXIT_OK
    assert read_summary(out)["processed_this_run"] == 1          # another graph setting: redone
    assert run(src, out, tiny_model_dir, av_model=tiny_av_dir, av_graph_config=AvGraphConfig(min_confidence=0.9),
               biomarker_config=BiomarkerConfig(crossing_merge_px=3.0)).exit_code == EXIT_OK
    assert read_summary(out)["processed_this_run"] == 1          # another biomarker setting: redone
