"""What the CPU can do, for picking among an artefact's ONNX graphs (``export.pair_graph``) and for advising on
the training precision.

Linux only reads ``/proc/cpuinfo``; elsewhere (or if it cannot be read) the answer is False, which selects the
plain graph: always correct, at worst slower.
"""
from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


def flags_in_cpuinfo(text: str) -> frozenset[str]:
    """The flags of the first ``flags`` line of a /proc/cpuinfo text (empty when there is none)."""
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[-1].split())
    return frozenset()


NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def avx512_in_cpuinfo(text: str) -> bool:
    """True when the first ``flags`` line of a /proc/cpuinfo text lists ``avx512f``."""
    return "avx512f" in flags_in_cpuinfo(text)


def native_bf16_in_cpuinfo(text: str) -> bool:
    """True when the CPU computes bfloat16 natively (``avx512_bf16`` or ``amx_bf16``): `retina train --precision
    bf16` is then faster than float32; without them bfloat16 is emulated and slower."""
    return bool(NATIVE_BF16_FLAGS & flags_in_cpuinfo(text))


def read_cpuinfo(cpuinfo: Path = CPUINFO) -> str:
    """The text of ``cpuinfo``; "" when it cannot be read (every answer below is then False)."""
    try:
        return cpuinfo.read_text()
    except OSError:
        return ""


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """This CPU's flags (``flags_in_cpuinfo`` of ``cpuinfo``); empty when it cannot be read."""
    return flags_in_cpuinfo(read_cpuinfo(cpuinfo))


def has_avx512(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU has AVX-512 (ONNX Runtime then blocks convolution channels by 16 instead of 8)."""
    return avx512_in_cpuinfo(read_cpuinfo(cpuinfo))


def has_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU has native bfloat16 units (see ``native_bf16_in_cpuinfo``); False if unknown."""
    return native_bf16_in_cpuinfo(read_cpuinfo(cpuinfo))
