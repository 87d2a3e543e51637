"""What the CPU can do, for picking among an artefact's ONNX graphs (``export.pair_graph``).

Linux only reads ``/proc/cpuinfo``; elsewhere (or if it cannot be read) the answer is False, which selects the
plain graph: always correct, at worst slower.
"""
from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def avx512_in_cpuinfo(text: str) -> bool:
    """True when the first ``flags`` line of a /proc/cpuinfo text lists ``avx512f``."""
    for line in text.splitlines():
        if line.startswith("flags"):
            return "avx512f" in line.split(":", 1)[-1].split()
    return False


def has_avx512(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU has AVX-512 (ONNX Runtime then blocks convolution channels by 16 instead of 8)."""
    try:
        return avx512_in_cpuinfo(cpuinfo.read_text())
    except OSError:
        return False
