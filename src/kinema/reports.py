"""Benchmark reports as JSON files: written atomically, and gzip-compressed when the name ends in
``.gz`` (``report.json.gz``).

Per-clip reports (WorldBench's 225 clips, each with its checks) run to hundreds of kilobytes of
JSON and compress about 25×, which keeps ``benchmarks/results/`` small. Compressed files are
written without a timestamp, so the same report gives the same bytes. Read one with
:func:`read_report` or ``zcat``.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

from kinema.atomic import atomic_write

__all__ = ["read_report", "write_report"]


def _compressed(path: Path) -> bool:
    return path.suffix == ".gz"


def write_report(path: str | os.PathLike[str], report: dict[str, Any]) -> Path:
    """Write ``report`` as indented JSON to ``path`` (gzip when it ends in ``.gz``); readers see
    the old file or the whole new one, never a partial one."""
    path = Path(path)
    data = (json.dumps(report, indent=2) + "\n").encode("utf-8")
    if _compressed(path):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in ``path`` (gunzipped when it ends in ``.gz``); ValueError naming the file
    when it is not one."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = (gzip.decompress(raw) if _compressed(path) else raw).decode("utf-8")
        value = json.loads(text)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        kind = "gzip-compressed JSON" if _compressed(path) else "JSON"
        raise ValueError(f"{path}: not a {kind} report ({e})") from e
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value
