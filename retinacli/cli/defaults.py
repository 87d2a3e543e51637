"""Where the shipped models live: `engines/` beside the package (source checkout or installed copy)."""
from __future__ import annotations

from pathlib import Path


def default_model_dir(name: str) -> Path:
    """engines/<name> of the installed package (wheel data) or of the source checkout."""
    here = Path(__file__).resolve().parent.parent  # retinacli/
    for cand in (here / "engines" / name, here.parent / "engines" / name):
        if (cand / "metadata.json").exists():
            return cand
    return here.parent / "engines" / name
