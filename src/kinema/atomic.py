"""Atomic writes: build a file or a folder under a hidden temporary name beside the target, then
rename it into place, so readers see the old version or the whole new one, never a partial one."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_directory",
    "atomic_write",
    "atomic_write_text",
    "check_replaceable",
    "prune_folders",
    "remove_partial_directories",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path in ``path``'s folder, then rename it to ``path``.

    Readers see the old file or the whole new one, never a partial file; on failure the
    temporary file is removed and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        write(tmp)
        tmp.chmod(0o666 & ~_umask())  # some writers create 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def check_replaceable(directory: str | os.PathLike[str], markers: Sequence[str]) -> None:
    """Raise ValueError unless ``directory`` may be replaced by a folder of the kind that holds
    every file in `markers`: it does not exist, is an empty folder, or is a folder of that kind
    (written before, as a rerun does). A file, or a folder of anything else, would be lost."""
    directory, markers = Path(directory), sorted(markers)
    valid = "give a path that does not exist or an empty folder"
    if markers:
        valid += f", or a folder holding {' and '.join(markers)} (one written the same way before)"
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} is a file, not a folder: refusing to replace it; {valid}")
    if not directory.is_dir() or not any(directory.iterdir()):
        return
    missing = [name for name in markers if not (directory / name).is_file()]
    if missing or not markers:  # no markers: no folder of that kind can be told apart
        lacks = f" (no {', '.join(missing)})" if missing else ""
        raise ValueError(
            f"{directory} holds other things{lacks}: refusing to replace it and delete them; "
            f"{valid}"
        )


@contextmanager
def atomic_directory(
    directory: str | os.PathLike[str], markers: Sequence[str] | None = None
) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``directory``; when the block ends without an
    error, it replaces ``directory`` (whose old contents are removed). On an error the temporary
    folder is removed and ``directory`` is left as it was.

    Only a folder of the same kind is replaced (`check_replaceable`): one holding every file in
    `markers`, checked before the block runs; None: every file the new folder holds at its top,
    checked once it is written. A file or any other non-empty folder raises ValueError."""
    directory = Path(directory)
    if markers is not None:
        check_replaceable(directory, markers)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the usual mode
    try:
        yield tmp
        written = [p.name for p in tmp.iterdir() if p.is_file()]
        check_replaceable(directory, written if markers is None else markers)
        for path in tmp.rglob("*"):  # writers such as safetensors create 0600 files
            path.chmod((0o777 if path.is_dir() else 0o666) & ~_umask())
        old = None
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / directory.name)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_partial_directories(directory: str | os.PathLike[str]) -> None:
    """Remove the temporary folders that `atomic_directory(directory)` blocks killed mid-way left
    beside ``directory``. Call it only where no other process may be writing ``directory``."""
    directory = Path(directory)
    for partial in directory.parent.glob(f".{glob.escape(directory.name)}.tmp-*"):
        shutil.rmtree(partial, ignore_errors=True)


def prune_folders(folders: list[Path], written: Path, keep: int) -> None:
    """Remove all but `keep` of `folders` (oldest first, e.g. checkpoints by step): the one just
    `written` always stays, with the `keep - 1` newest others. Call it only once whatever points
    at `written` (a `latest` file) has moved, so a crash mid-way never leaves it dangling."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    others = [p for p in folders if p != written]
    for old in others[: max(len(others) - (keep - 1), 0)]:
        shutil.rmtree(old, ignore_errors=True)
