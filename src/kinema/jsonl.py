"""JSON Lines files (one JSON object per line, such as clip manifests), read with errors that name
the file and the line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["read_json_objects"]


def read_json_objects(path: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, object)`` for each non-blank line of the UTF-8 JSON Lines file ``path``, where
    ``where`` is ``"PATH:LINE"`` for the caller's own error messages. A line that is not JSON, or
    not a JSON object, raises ValueError naming it."""
    path = Path(path)
    for lineno, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e.msg})") from e
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(value).__name__}")
        yield where, value
