"""CPU feature detection that picks among an artefact's graphs."""
from __future__ import annotations

from retinacli.runtime.cpu_features import avx512_in_cpuinfo, has_avx512, has_native_bf16, native_bf16_in_cpuinfo

XEON = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw\n"
EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n"


def test_avx512_is_read_from_the_flags_line():
    assert avx512_in_cpuinfo(XEON) is True
    assert avx512_in_cpuinfo(EPYC) is False
    assert avx512_in_cpuinfo("flags\t: avx512vl avx2\n") is False  # only avx512f (the foundation) counts
    assert avx512_in_cpuinfo("") is False


def test_unreadable_cpuinfo_means_no_avx512(tmp_path):
    assert has_avx512(tmp_path / "missing") is False
    (tmp_path / "cpuinfo").write_text(XEON)
    assert has_avx512(tmp_path / "cpuinfo") is True


def test_native_bf16_needs_avx512_bf16_or_amx_bf16():
    assert native_bf16_in_cpuinfo(XEON) is False  # AVX-512 alone emulates bfloat16
    assert native_bf16_in_cpuinfo(EPYC) is False
    assert native_bf16_in_cpuinfo("flags\t: avx512f avx512_bf16\n") is True
    assert native_bf16_in_cpuinfo("flags\t: avx512f amx_tile amx_bf16\n") is True
    assert native_bf16_in_cpuinfo("model name\t: x\n") is False


def test_unreadable_cpuinfo_means_no_native_bf16(tmp_path):
    assert has_native_bf16(tmp_path / "missing") is False
    (tmp_path / "cpuinfo").write_text("flags\t: amx_bf16\n")
    assert has_native_bf16(tmp_path / "cpuinfo") is True
