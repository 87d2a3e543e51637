"""Typed configuration of a `retina process` run."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ProcessConfig:
    """inputs: files or folders; out_dir: the only place anything is written; model: artefact folder or .pt."""

    inputs: list[Path]
    out_dir: Path
    model: Path
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
