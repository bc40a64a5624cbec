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
import tempfile
from pathlib import Path
from typing import Any

from kinema.atomic import atomic_write

__all__ = ["check_writable", "read_report", "write_report"]


def check_writable(
    path: str | os.PathLike[str],
    flag: str,
    *,
    folder: bool = False,
    suffixes: tuple[str, ...] = (),
) -> Path:
    """``path`` as a Path if a file (a folder with ``folder``) can be made there: not empty, not
    a folder (a file) already, one of ``suffixes`` when given, and no file where one of its parent
    folders must be. ValueError naming ``flag``, the path and what would do otherwise. Commands
    call it before any work, so a bad path never costs a run."""
    text = os.fspath(path)
    kind = "folder" if folder else "file"
    if not text.strip():
        raise ValueError(f"{flag} is empty: give the path of a {kind} to write")
    path = Path(text)
    if suffixes and path.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} {text}: use a name ending in {' or '.join(suffixes)}")
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {text}: is a file; give a folder (new or existing)")
    if not folder and path.is_dir():
        raise ValueError(f"{flag} {text}: is a folder; give the path of a file to write")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{flag} {text}: {parent} is a file, not a folder")
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." at the latest
    where = existing if existing.is_dir() else existing.parent
    try:  # a probe file: it also catches what os.access misses (a read-only mount as root)
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as e:
        raise ValueError(f"{flag} {text}: cannot create files in {where} ({e.strerror})") from None
    return path


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
