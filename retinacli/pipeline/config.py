"""Typed configuration of a `retina process` run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from retinacli.postprocess.av_labels import AvGraphConfig
from retinacli.postprocess.biomarkers import BiomarkerConfig
from retinacli.postprocess.grade_hints import HintConfig


@dataclass
class ProcessConfig:
    """inputs: files or folders; out_dir: the only place anything is written; model: vessel artefact folder or
    .pt; hemorrhage_model: haemorrhage artefact (None: not run, the DR hint is then NOT_ASSESSED)."""

    inputs: list[Path]
    out_dir: Path
    model: Path
    hemorrhage_model: Path | None = None
    av_model: Path | None = None  # artery/vein model (None: no A/V map, segments or CRAE/CRVE/AVR)
    hint_config: HintConfig = field(default_factory=HintConfig)
    av_graph_config: AvGraphConfig = field(default_factory=AvGraphConfig)  # A/V graph post-processing
    biomarker_config: BiomarkerConfig = field(default_factory=BiomarkerConfig)
    backend: str = "auto"
    batch_size: int = 4
    threads: int = 0           # inference threads (0: runtime default)
    workers: int = 2           # decode and write threads
    save_probabilities: bool = False
    overlay: bool = True
    resume: bool = True        # skip inputs already done with the same file and model
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 1:
            raise ValueError(f"batch_size and workers must be >= 1 (got {self.batch_size}, {self.workers})")
