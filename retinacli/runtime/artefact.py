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
CANVASES = "canvases"    # metadata.json key: {"<side>": {"file", "avx512_file", ...}} of the smaller canvas sides


@dataclass(frozen=True)
class CanvasGraphs:
    """The graphs of one smaller canvas side an artefact ships (``ScaleSpec.canvas_options_px``): the plain graph
    and, when shipped, its image-pair graph for AVX-512 CPUs."""

    side: int
    path: Path
    avx512_path: Path | None = None


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
    extra_canvases: tuple[CanvasGraphs, ...] = ()  # smaller canvas sides with their own graphs, ascending

    @property
    def test_time_flips(self) -> tuple[str, ...]:
        """Flips the artefact asks to average over at inference (``runtime.flip_average``); () = one pass."""
        from retinacli.runtime.flip_average import check_flips

        return check_flips(self.metadata.get("test_time_flips"))

    def scale_spec(self) -> "ScaleSpec":
        """The ``preprocess.normalise.ScaleSpec`` this model expects its inputs prepared with (its canvas options are
        the smaller sides whose graphs are present)."""
        from retinacli.preprocess.normalise import scale_spec_of

        return scale_spec_of(self.metadata["preprocess"], [c.side for c in self.extra_canvases])


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
            from retinacli.train.checkpoint import TRAINING_STATE_KEYS, load_checkpoint
        except ImportError as exc:
            raise BackendUnavailable(f"{path} is a torch checkpoint and needs PyTorch: pip install "
                                     "'retinacli[train]' (or use a model folder with model.onnx)") from exc
        ck = load_checkpoint(path)
        meta = {k: v for k, v in ck.items() if k != "state_dict" and k not in TRAINING_STATE_KEYS}
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
    from retinacli.runtime.flip_average import check_flips

    try:
        check_flips(meta.get("test_time_flips"))
    except ValueError as exc:
        raise ValueError(f"{meta_path}: {exc}") from None
    sides = _canvas_entries(meta, meta_path)
    for side, entry in sides.items():
        if onnx_path.name in (entry.get("file"), entry.get("avx512_file")):
            raise ValueError(f"{onnx_path.name} is this model's {side}-px graph, only for images whose FOV is drawn "
                             f"small enough for it: run the folder {folder} (it picks the graph for each image) or "
                             "its model.onnx")
    avx512_path, extra = None, []
    if path.suffix != ".onnx":  # optional graphs: a copy of the folder without them runs model.onnx
        pairs = (meta.get("graphs") or {}).get(AVX512_GRAPH) or {}
        avx512_path = _optional_graph(folder, meta, meta_path, pairs.get("file"))
        for side, entry in sorted(sides.items()):
            plain = _optional_graph(folder, meta, meta_path, entry.get("file"))
            if plain is not None:
                extra.append(CanvasGraphs(side, plain, _optional_graph(folder, meta, meta_path,
                                                                       entry.get("avx512_file"))))
    try:
        pre = meta["preprocess"]
        info = ModelInfo(meta["name"], onnx_path, int(pre["canvas_px"]), int(pre["fov_diameter_px"]),
                         float(meta["threshold"]), digest, meta, avx512_path, tuple(extra))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{meta_path}: missing or malformed field {exc}") from None
    from retinacli.preprocess.normalise import scale_spec_of

    try:  # the scale and every listed side must make a valid ScaleSpec (e.g. no 'smaller' side as big as the canvas)
        scale_spec_of(pre, sides)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{meta_path}: {exc}") from None
    return info


def _canvas_entries(meta: dict, meta_path: Path) -> dict[int, dict]:
    """metadata.json ``canvases`` as {side px: entry}; ValueError naming the file when it is malformed."""
    try:
        out = {int(side): entry for side, entry in (meta.get(CANVASES) or {}).items()}
        if not all(isinstance(entry, dict) for entry in out.values()):
            raise TypeError("an entry is not an object")
        return out
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"{meta_path}: malformed '{CANVASES}' ({exc})") from None


def _optional_graph(folder: Path, meta: dict, meta_path: Path, name: str | None) -> Path | None:
    """folder/name when the metadata names it and it exists (checked against its sha256 entry), else None."""
    if not name or not (folder / str(name)).is_file():
        return None
    path = folder / str(name)
    expected = (meta.get("sha256") or {}).get(path.name)
    if expected and sha256_file(path) != expected:
        raise ValueError(f"{path} does not match {meta_path} (sha256 differs): the folder is half-updated or edited; "
                         "export it again")
    return path


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


def cpu_onnx_graphs(info: ModelInfo) -> dict[int, tuple[Path, Path | None]]:
    """{canvas side: (graph, graph for the last image of an odd batch or None)} that ONNX Runtime runs on this CPU.

    On an AVX-512 CPU, where the artefact folder ships one, the image-pair graph of a side (faster there; same
    probabilities within the parity tolerance) with its plain graph for odd batches; otherwise the plain graph
    alone (or the .onnx file given explicitly). The model's own canvas comes first, then the smaller sides."""
    from retinacli.runtime.cpu_features import has_avx512

    avx512 = has_avx512()

    def pick(plain: Path, pairs: Path | None) -> tuple[Path, Path | None]:
        return (pairs, plain) if pairs is not None and avx512 else (plain, None)

    return {info.canvas_px: pick(info.path, info.avx512_path),
            **{c.side: pick(c.path, c.avx512_path) for c in info.extra_canvases}}


def resolve_backend_name(info: ModelInfo, backend: str) -> str:
    """The runtime ``backend`` means for ``info``: ``auto`` is ONNX Runtime for an .onnx artefact, torch for a
    checkpoint. BackendUnavailable for an unknown name."""
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnxruntime" if info.path.suffix == ".onnx" else "torch"
    return backend


def runtime_files(info: ModelInfo, backend: str) -> list[Path]:
    """The files ``backend`` (auto, onnxruntime, torch) runs for ``info``: the graphs `cpu_onnx_graphs` picks for
    ONNX Runtime; a checkpoint, or the artefact's model.pt, for torch."""
    if resolve_backend_name(info, backend) == "onnxruntime":
        return [p for pair in cpu_onnx_graphs(info).values() for p in pair if p is not None]
    return [info.path if info.path.suffix == ".pt" else info.path.parent / "model.pt"]


def _create_runtime(info: ModelInfo, backend: str, threads: int) -> Backend:
    backend = resolve_backend_name(info, backend)
    if backend == "onnxruntime":
        if info.path.suffix != ".onnx":
            raise BackendUnavailable(f"{info.path} is a torch checkpoint: export it with `retina export-onnx` first")
        from retinacli.runtime.onnxruntime_backend import OnnxRuntimeBackend

        graphs = cpu_onnx_graphs(info)
        path, odd = graphs.pop(info.canvas_px)
        return OnnxRuntimeBackend(path, threads=threads, odd_path=odd, more_sides=graphs, side=info.canvas_px)
    files = runtime_files(info, backend)
    if not files[0].exists():
        raise BackendUnavailable(f"the torch backend needs a checkpoint; {files[0]} does not exist")
    from retinacli.runtime.torch_backend import TorchBackend

    return TorchBackend(files[0], threads=threads, canvas_sides=info.scale_spec().canvas_sides)
