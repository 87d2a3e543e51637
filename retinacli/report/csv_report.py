"""report.csv: exactly one row per input, in input order (pandas, written atomically)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from retinacli.io.write import write_text_atomic


def write_report_csv(rows: list[dict], columns: list[str], path: Path) -> None:
    frame = pd.DataFrame(rows, columns=columns)
    write_text_atomic(path, frame.to_csv(index=False))
