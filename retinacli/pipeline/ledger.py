"""Crash-safe run ledger (SQLite, inside the output folder).

One row per input id, committed as soon as that input is finished, so a killed run loses nothing
already written and a re-run skips inputs that are done (same file size and mtime, same model).
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    image_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    file_size INTEGER,
    file_mtime_ns INTEGER,
    model_key TEXT,
    status TEXT NOT NULL,
    row_json TEXT NOT NULL,
    updated_utc TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
"""


class Ledger:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    def done_row(self, image_id: str, file_size: int, file_mtime_ns: int, model_key: str) -> dict | None:
        """The stored row when this input already finished OK with the same file and model, else None."""
        cur = self.conn.execute(
            "SELECT row_json FROM items WHERE image_id=? AND status='ok' AND file_size=? AND file_mtime_ns=? "
            "AND model_key=?", (image_id, file_size, file_mtime_ns, model_key))
        hit = cur.fetchone()
        return json.loads(hit[0]) if hit else None

    def record(self, image_id: str, path: str, file_size: int | None, file_mtime_ns: int | None,
               model_key: str, row: dict) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO items (image_id, path, file_size, file_mtime_ns, model_key, status, row_json) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (image_id, path, file_size, file_mtime_ns, model_key, row["status"], json.dumps(row, default=str)))

    def rows(self, model_key: str) -> dict[str, dict]:
        """Stored rows made with ``model_key``, by image id."""
        return {k: json.loads(v) for k, v in
                self.conn.execute("SELECT image_id, row_json FROM items WHERE model_key=?", (model_key,))}

    def close(self) -> None:
        self.conn.close()
