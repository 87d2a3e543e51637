"""Model artefacts that describe themselves, and the choice of backend from an artefact.

An artefact is a folder ``engines/<model>/`` with ``model.onnx`` + ``metadata.json`` (the shipped form),
or a training checkpoint ``*.pt`` (self-describing too). ``load_model(path, backend)`` returns the
metadata and a ready Backend.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from retinacli.runtime.base import Backend, BackendUnavailable

METADATA_FORMAT = "retina-model/1"
BACKENDS = ("auto", "onnxruntime", "torch")
AVX512_GRAPH = "avx512"  # metadata.json ``graphs`` key of the image-pair graph (export.pair_graph)


@dataclass(frozen=True)
class ModelInfo:
    """What the pipeline needs to know about a model, read from its artefact."""

    name: str
    path: Path            # the file actually run (model.onnx or *.pt)
    canvas_px: int
    fov_diameter_px: int
    threshold: float
    sha256: str
    metadata: dict
    avx512_path: Path | None = None  # the image-pair graph for AVX-512 CPUs (export.pair_graph), when shipped

    @property
    def test_time_flips(self) -> tuple[str, ...]:
        """Flips the artefact asks to average over at inference (``runtime.flip_average``); () = one pass."""
        from retinacli.runtime.flip_average import check_flips

        return check_flips(self.metadata.get("test_time_flips"))

    def scale_spec(self):
        """The ``preprocess.normalise.ScaleSpec`` this model expects its inputs prepared with."""
        from retinacli.preprocess.normalise import scale_spec_of

        return scale_spec_of(self.metadata["preprocess"])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_model_info(path: Path) -> ModelInfo:
    """Read an artefact folder (or its model.onnx) or a checkpoint .pt -> ModelInfo. Raises FileNotFoundError/ValueError."""
    path = Path(path)
    if path.suffix == ".pt":
        try:
            from retinacli.train.checkpoint import load_checkpoint
        except ImportError as exc:
            raise BackendUnavailable(f"{path} is a torch checkpoint and needs PyTorch: pip install "
                                     "'retinacli[train]' (or use a model folder with model.onnx)") from exc
        ck = load_checkpoint(path)
        meta = {k: v for k, v in ck.items() if k not in ("state_dict", "optimizer", "rng", "torch_rng")}
        try:
            return ModelInfo(ck["model"]["name"], path, int(ck["preprocess"]["canvas_px"]),
                             int(ck["preprocess"]["fov_diameter_px"]), float(ck["threshold"]), sha256_file(path), meta)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: checkpoint lacks {exc}") from None
    folder = path.parent if path.suffix == ".onnx" else path
    meta_path = folder / "metadata.json"
    onnx_path = path if path.suffix == ".onnx" else folder / "model.onnx"
    if not meta_path.exists() or not onnx_path.exists():
        raise FileNotFoundError(f"{folder} is not a model folder: it needs model.onnx and metadata.json")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{meta_path} is not valid JSON: {exc}") from None
    if meta.get("format") != METADATA_FORMAT:
        raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r} (expected {METADATA_FORMAT})")
    digest = sha256_file(onnx_path)
    expected = (meta.get("sha256") or {}).get(onnx_path.name)  # an explicit .onnx file is run as it is
    if expected and expected != digest:
        raise ValueError(f"{onnx_path} does not match {meta_path} (sha256 differs): the folder is half-updated "
                         "or edited; export it again")
    avx512_path = None
    avx512 = (meta.get("graphs") or {}).get(AVX512_GRAPH)
    if avx512 and path.suffix != ".onnx" and (folder / str(avx512.get("file", ""))).is_file():
        avx512_path = folder / str(avx512["file"])  # optional: a copy of the folder without it runs model.onnx
        expected = (meta.get("sha256") or {}).get(avx512_path.name)
        if expected and sha256_file(avx512_path) != expected:
            raise ValueError(f"{avx512_path} does not match {meta_path} (sha256 differs): the folder is "
                             "half-updated or edited; export it again")
    from retinacli.runtime.flip_average import check_flips

    try:
        check_flips(meta.get("test_time_flips"))
    except ValueError as exc:
        raise ValueError(f"{meta_path}: {exc}") from None
    try:
        pre = meta["preprocess"]
        return ModelInfo(meta["name"], onnx_path, int(pre["canvas_px"]), int(pre["fov_diameter_px"]),
                         float(meta["threshold"]), digest, meta, avx512_path)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{meta_path}: missing or malformed field {exc}") from None


def resolve_flips(info: ModelInfo, flips=None) -> tuple[str, ...]:
    """The test-time flips a run of ``info`` uses: the artefact's own (None) or the caller's override."""
    from retinacli.runtime.flip_average import check_flips

    return info.test_time_flips if flips is None else check_flips(flips)


def create_backend(info: ModelInfo, backend: str = "auto", threads: int = 0, flips=None) -> Backend:
    """Pick the runtime for an artefact: .onnx -> ONNX Runtime, .pt -> torch (``auto``), or as asked.

    ``flips``: test-time flips to average over (``runtime.flip_average``); None = what the artefact says
    (``info.test_time_flips``), () = a single pass."""
    flips = resolve_flips(info, flips)
    inner = _create_runtime(info, backend, threads)
    if not flips:
        return inner
    from retinacli.runtime.flip_average import FlipAveragedBackend

    return FlipAveragedBackend(inner, flips)


def cpu_onnx_paths(info: ModelInfo) -> list[Path]:
    """The ONNX graphs ONNX Runtime runs on this CPU: on an AVX-512 CPU, when the artefact folder ships one, the
    image-pair graph (faster there; same probabilities within the parity tolerance), with ``model.onnx`` for the
    last image of an odd batch; otherwise ``model.onnx`` alone (or the .onnx file given explicitly)."""
    from retinacli.runtime.cpu_features import has_avx512

    return [info.avx512_path, info.path] if info.avx512_path is not None and has_avx512() else [info.path]


def resolve_backend_name(info: ModelInfo, backend: str) -> str:
    """The runtime ``backend`` means for ``info``: ``auto`` is ONNX Runtime for an .onnx artefact, torch for a
    checkpoint. BackendUnavailable for an unknown name."""
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnxruntime" if info.path.suffix == ".onnx" else "torch"
    return backend


def runtime_files(info: ModelInfo, backend: str) -> list[Path]:
    """The files ``backend`` (auto, onnxruntime, torch) runs for ``info``: the graphs `cpu_onnx_paths` picks for
    ONNX Runtime; a checkpoint, or the artefact's model.pt, for torch."""
    if resolve_backend_name(info, backend) == "onnxruntime":
        return cpu_onnx_paths(info)
    return [info.path if info.path.suffix == ".pt" else info.path.parent / "model.pt"]


def _create_runtime(info: ModelInfo, backend: str, threads: int) -> Backend:
    backend = resolve_backend_name(info, backend)
    files = runtime_files(info, backend)
    if backend == "onnxruntime":
        if info.path.suffix != ".onnx":
            raise BackendUnavailable(f"{info.path} is a torch checkpoint: export it with `retina export-onnx` first")
        from retinacli.runtime.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(files[0], threads=threads, odd_path=files[1] if len(files) > 1 else None)
    if not files[0].exists():
        raise BackendUnavailable(f"the torch backend needs a checkpoint; {files[0]} does not exist")
    from retinacli.runtime.torch_backend import TorchBackend

    return TorchBackend(files[0], threads=threads)
