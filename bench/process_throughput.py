"""Benchmark: images/second of `retina process` on real data, end to end.

Runs the same library call as the CLI (decode, FOV, batched inference, mapping back, mask + overlay
writes, ledger, report) on the DRIVE test images (565x584) and the HRF-AV test images (3504x2336),
each into a fresh temporary output folder, and prints throughput with the input size and the machine.
Stages: ``vessels`` (vessel model only, the foundation issue's target) and ``full`` (also the haemorrhage model,
disc/fovea, DR hint, the A/V model, graph post-processing and biomarkers), as ``--stages`` chooses.

    python bench/process_throughput.py [--datasets ../shared/datasets] [--stages vessels,full] [--sets drive,hrf]
        [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from retinacli.pipeline.config import ProcessConfig
from retinacli.pipeline.run import process_inputs
from retinacli.runtime.artefact import read_model_info, runtime_files
from retinacli.runtime.cpu_features import has_avx512

ROOT = Path(__file__).resolve().parent.parent
SETS = {"drive": ("DRIVE test (565x584)", "DRIVE/test/images"),
        "hrf": ("HRF-AV test (3504x2336)", "HRF-AV/test/images")}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--model", type=Path, default=ROOT / "engines" / "vessels")
    ap.add_argument("--repeat", type=int, default=2, help="runs per dataset; the best is reported")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--stages", default="vessels,full", help="comma-separated: vessels, full")
    ap.add_argument("--sets", default="drive,hrf", help="comma-separated: drive, hrf")
    ap.add_argument("--hemorrhage-model", type=Path, default=ROOT / "engines" / "hemorrhage")
    ap.add_argument("--av-model", type=Path, default=ROOT / "engines" / "av")
    args = ap.parse_args()
    graphs = " + ".join(p.name for p in runtime_files(read_model_info(args.model), args.backend))
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical cores, AVX-512 {'yes' if has_avx512() else 'no'}, "
          f"{platform.system()} {platform.machine()}, python {platform.python_version()}; model {args.model} "
          f"(runs {graphs}); backend {args.backend}")
    for stage in [s.strip() for s in args.stages.split(",") if s.strip()]:
        extra = {}
        if stage == "full":
            missing = [p for p in (args.hemorrhage_model, args.av_model) if not (p / "metadata.json").exists()]
            if missing:
                print(f"full: skipped ({', '.join(map(str, missing))} not found)")
                continue
            extra = {"hemorrhage_model": args.hemorrhage_model, "av_model": args.av_model}
        for key in [k.strip() for k in args.sets.split(",") if k.strip()]:
            if key not in SETS:
                ap.error(f"unknown set {key!r}; choose from {', '.join(SETS)}")
            label, rel = SETS[key]
            folder = args.datasets / rel
            if not folder.is_dir():
                print(f"{label}: skipped ({folder} not found)")
                continue
            best = None
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    cfg = ProcessConfig(inputs=[folder], out_dir=Path(tmp) / "out", model=args.model,
                                        backend=args.backend, batch_size=args.batch_size, progress=False, **extra)
                    t0 = time.perf_counter()
                    result = process_inputs(cfg)
                    wall = time.perf_counter() - t0
                n = result.counts.get("ok", 0)
                best = wall if best is None else min(best, wall)
            what = ("vessel mask + overlay" if stage == "vessels" else
                    "vessels, haemorrhages, disc/fovea, hint, A/V graph, biomarkers, all outputs")
            print(f"[{stage}] {label}: {n} images ok, best of {args.repeat}: {best:.2f} s -> {n / best:.2f} images/s "
                  f"(end to end: decode, FOV, inference, {what})")


if __name__ == "__main__":
    main()
