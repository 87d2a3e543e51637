"""Benchmark: images/second of `retina process` (vessels) on real data, end to end.

Runs the same library call as the CLI (decode, FOV, batched inference, mapping back, mask + overlay
writes, ledger, report) on the DRIVE test images (565x584) and the HRF-AV test images (3504x2336),
each into a fresh temporary output folder, and prints throughput with the input size and the machine.

    python bench/process_throughput.py [--datasets ../shared/datasets] [--model engines/vessels] [--repeat 2]
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

ROOT = Path(__file__).resolve().parent.parent
SETS = {"DRIVE test (565x584)": "DRIVE/test/images", "HRF-AV test (3504x2336)": "HRF-AV/test/images"}


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
    args = ap.parse_args()
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}, "
          f"python {platform.python_version()}; model {args.model}; backend {args.backend}")
    for label, rel in SETS.items():
        folder = args.datasets / rel
        if not folder.is_dir():
            print(f"{label}: skipped ({folder} not found)")
            continue
        best = None
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                cfg = ProcessConfig(inputs=[folder], out_dir=Path(tmp) / "out", model=args.model, backend=args.backend,
                                    batch_size=args.batch_size, progress=False)
                t0 = time.perf_counter()
                result = process_inputs(cfg)
                wall = time.perf_counter() - t0
            n = result.counts.get("ok", 0)
            best = wall if best is None else min(best, wall)
        print(f"{label}: {n} images ok, best of {args.repeat}: {best:.2f} s -> {n / best:.2f} images/s "
              f"(end to end: decode, FOV, inference, mask + overlay PNG/JPEG writes)")


if __name__ == "__main__":
    main()
