"""`retina process`: every input gets exactly one row; a bad file never stops the batch; a killed run resumes.

Flow: discover -> decode/prepare in worker threads (bounded prefetch) -> batched inference on the calling
thread -> post-process + atomic writes in worker threads -> ledger row per input -> report.csv + summary.
"""
from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from retinacli.io.discover import InputItem, discover
from retinacli.io.write import confined_path
from retinacli.pipeline.config import ProcessConfig
from retinacli.pipeline.item import (OUTPUT_NAMES, ROW_FIELDS, ROW_SCHEMA, Loaded, ModelOutput, base_row,
                                     finish_item, item_dir, load_item)
from retinacli.pipeline.ledger import Ledger
from retinacli.report.csv_report import write_report_csv
from retinacli.report.summary import build_summary, write_summary
from retinacli.runtime.artefact import create_backend, read_model_info, runtime_files
from retinacli.runtime.flip_average import flips_label

EXIT_OK = 0             # every image input processed
EXIT_SOME_FAILED = 3    # the run finished, but one or more inputs failed (see report.csv 'reason')
EXIT_NO_INPUTS = 4      # no image files were found in the inputs
LEDGER_NAME = ".retina/ledger.sqlite"
PENDING_REASON = "the run stopped before this image; run the same command again to resume"
REPORT_NAME = "report.csv"
SUMMARY_NAME = "run_summary.json"


@dataclass
class RunResult:
    exit_code: int
    counts: dict
    report_path: Path
    summary_path: Path
    ignored: list[Path]  # files without an image extension (listed in the summary, never silently dropped)


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _file_key(path: Path) -> tuple[int | None, int | None]:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return None, None


def _non_empty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _model_entry(info, backend_name: str) -> dict:
    spec = info.scale_spec()
    return {"name": info.name, "file": str(info.path),
            "files_run": [p.name for p in runtime_files(info, backend_name)], "sha256": info.sha256,
            "threshold": info.threshold, "canvas_px": info.canvas_px, "fov_diameter_px": info.fov_diameter_px,
            "min_fov_diameter_px": spec.min_fov_diameter_px, "canvas_options_px": list(spec.canvas_options_px),
            "test_time_flips": list(info.test_time_flips)}


def canvas_key(loaded: Loaded) -> tuple[int, ...]:
    """The canvas sides of an image for the vessel model and each further model (images batch only with equals)."""
    return (loaded.prepared.transform.canvas_px,
            *(p.transform.canvas_px for _, p in sorted(loaded.extra_prepared.items())))


def process_inputs(cfg: ProcessConfig) -> RunResult:
    """Run the batch described by ``cfg``. Raises FileNotFoundError / BackendUnavailable before any work
    when the inputs or the model are unusable; per-input problems only ever become rows."""
    started, t_start = _utc(), time.perf_counter()
    out_dir = Path(cfg.out_dir).resolve()
    images, others = discover(cfg.inputs, exclude=out_dir)
    info = read_model_info(cfg.model)
    extra_paths = {"hemorrhage": cfg.hemorrhage_model, "av": cfg.av_model}
    extra_infos = {name: read_model_info(p) for name, p in extra_paths.items() if p is not None}
    report_path, summary_path = confined_path(out_dir, REPORT_NAME), confined_path(out_dir, SUMMARY_NAME)
    if not images:  # e.g. a share that is not mounted: say so, and never replace an earlier report
        out_dir.mkdir(parents=True, exist_ok=True)
        if not report_path.exists():
            write_report_csv([], ROW_FIELDS, report_path)
        return RunResult(EXIT_NO_INPUTS, {"inputs": 0}, report_path, summary_path, [it.path for it in others])
    spec = info.scale_spec()
    extra_specs = {name: i.scale_spec() for name, i in extra_infos.items()}
    backend = create_backend(info, cfg.backend, cfg.threads)
    extra_backends = {name: create_backend(i, cfg.backend, cfg.threads) for name, i in extra_infos.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    # what makes an earlier result reusable: the same model files, thresholds and scales, and rows of the same
    # schema, quality and hint rules (a row from an older retina lacks columns such as the quality verdict)
    # (test-time flips live in metadata.json, not in model.onnx, so they are part of the key too)
    def model_part(i, scale) -> str:
        return f"{i.sha256}:thr={i.threshold!r}:flips={flips_label(i.test_time_flips)}:{scale}"

    extra_key = ":".join(f"{name}={model_part(i, extra_specs[name])}" for name, i in extra_infos.items()) \
        or "vessels_only"
    # the A/V graph and biomarker settings change the A/V outputs and columns, so they are part of the key too
    post = f"{cfg.av_graph_config}:{cfg.biomarker_config}" if "av" in extra_infos else ""
    model_key = f"{model_part(info, spec)}:{extra_key}:{cfg.hint_config}:{post}:rows={ROW_SCHEMA}"
    ledger = Ledger(confined_path(out_dir, LEDGER_NAME))
    kinds = ["mask"] + (["overlay"] if cfg.overlay else []) + (["probability"] if cfg.save_probabilities else [])
    if "hemorrhage" in extra_infos:
        kinds += ["hemorrhage_mask", "findings"] + (["hemorrhage_overlay"] if cfg.overlay else []) + \
            (["hemorrhage_probability"] if cfg.save_probabilities else [])
    if "av" in extra_infos:
        kinds += ["av_map", "segments"] + (["av_overlay"] if cfg.overlay else [])

    def wanted(image_id: str) -> set[str]:
        return {(item_dir(image_id) / OUTPUT_NAMES[k]).as_posix() for k in kinds}

    keys = {}
    todo: list[InputItem] = []
    for it in images:
        keys[it.image_id] = _file_key(it.path)
        done = ledger.done_row(it.image_id, *keys[it.image_id], model_key) if cfg.resume else None
        if done:
            outs = {o for o in str(done.get("outputs", "")).split(";") if o}
            # skip only when every output this run asks for was written and is still there
            if wanted(it.image_id) <= outs and all(_non_empty(confined_path(out_dir, o)) for o in outs):
                continue
        todo.append(it)
    interrupted = False
    bar = tqdm(total=len(todo), desc="retina process", unit="img", disable=not cfg.progress)
    pending_writes: deque[Future] = deque()

    def record(row: dict) -> None:
        ledger.record(row["image_id"], row["path"], *keys.get(row["image_id"], (None, None)), model_key, row)
        bar.update(1)

    def drain(limit: int) -> None:
        while len(pending_writes) > limit or (pending_writes and pending_writes[0].done()):
            record(pending_writes.popleft().result())

    try:
        with ThreadPoolExecutor(max(1, cfg.workers), thread_name_prefix="decode") as decoders, \
                ThreadPoolExecutor(max(1, cfg.workers), thread_name_prefix="write") as writers:
            loads: deque[Future] = deque()
            queue = iter(todo)
            prefetch = max(2, 2 * cfg.batch_size)

            def refill() -> None:
                while len(loads) < prefetch:
                    it = next(queue, None)
                    if it is None:
                        return
                    loads.append(decoders.submit(load_item, it, spec, extra_specs))

            def run_batch(batch: list[Loaded]) -> None:
                t0 = time.perf_counter()
                try:
                    probs = backend.run(np.stack([b.prepared.canvas.transpose(2, 0, 1) for b in batch]))
                except Exception as exc:
                    for b in batch:
                        record(dict(b.row, status="failed", reason=f"inference_error: {type(exc).__name__}: {exc}"))
                    return
                per_image_ms = (time.perf_counter() - t0) * 1e3 / len(batch)
                outs: list[dict[str, ModelOutput]] = [{} for _ in batch]
                for name, be in extra_backends.items():
                    t0 = time.perf_counter()
                    try:
                        extra = be.run(np.stack([b.extra_prepared[name].canvas.transpose(2, 0, 1) for b in batch]))
                    except Exception as exc:
                        for b in batch:
                            record(dict(b.row, status="failed",
                                        reason=f"{name}_inference_error: {type(exc).__name__}: {exc}"))
                        return
                    ms = (time.perf_counter() - t0) * 1e3 / len(batch)
                    for o, p in zip(outs, extra):
                        o[name] = ModelOutput(p, extra_infos[name].threshold, ms)
                for b, p, o in zip(batch, probs, outs):
                    pending_writes.append(writers.submit(finish_item, b, p[0], info.threshold, out_dir, per_image_ms,
                                                         cfg.save_probabilities, cfg.overlay, o, cfg.hint_config,
                                                         cfg.av_graph_config, cfg.biomarker_config))
                drain(limit=2 * cfg.batch_size)

            # one batch holds one canvas side per model (a model may ship smaller canvases for small FOVs), so images
            # wait in a bucket per combination of sides. A full bucket runs; when more than a batch of images waits in
            # all (a folder that mixes cameras), the oldest bucket runs as it is, so memory stays bounded
            buckets: dict[tuple[int, ...], list[Loaded]] = {}
            refill()
            while loads:
                loaded = loads.popleft().result()
                refill()
                if loaded.prepared is None:
                    record(loaded.row)
                    continue
                key = canvas_key(loaded)
                buckets.setdefault(key, []).append(loaded)
                if len(buckets[key]) == cfg.batch_size:
                    run_batch(buckets.pop(key))
                elif sum(map(len, buckets.values())) > cfg.batch_size:
                    run_batch(buckets.pop(next(iter(buckets))))
            for batch in buckets.values():
                run_batch(batch)
            drain(limit=0)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        bar.close()
        stored = ledger.rows(model_key)
        ledger.close()
        # one row per input, in input order; an input this run did not reach (stopped early) says so
        rows = [stored.get(it.image_id) or dict(base_row(it), status="pending", reason=PENDING_REASON)
                for it in images]
        write_report_csv(rows, ROW_FIELDS, report_path)
        models = {"vessels": _model_entry(info, backend.name),
                  **{name: _model_entry(i, extra_backends[name].name) for name, i in extra_infos.items()}}
        summary = build_summary(rows, models, backend.name, started, _utc(), time.perf_counter() - t_start,
                                interrupted, len(todo), {"inputs": [str(p) for p in cfg.inputs], "out_dir": str(out_dir),
                                              "ignored_non_image_files": [str(it.path) for it in others]})
        write_summary(summary, summary_path)
        backend.close()
        for be in extra_backends.values():
            be.close()
    counts = summary["counts"]
    code = EXIT_SOME_FAILED if counts.get("failed", 0) else EXIT_OK
    return RunResult(code, counts, report_path, summary_path, [it.path for it in others])
