"""Manifests of training clips: JSON Lines, one clip per line, and a folder scanner that makes one.

A line holds ``path`` (relative to the manifest's folder, or absolute), ``width``, ``height``,
``frames``, ``fps``, optionally ``prompt`` (a short text) and ``caption`` (a detailed text), and
any other fields (kept in ``ClipRecord.extra`` and written back). ``kinema world make`` writes
such manifests; ``kinema data scan DIR`` writes one for a folder of videos and images, pairing
``NAME.txt`` beside ``NAME.mp4`` as its caption.
"""

from __future__ import annotations

import codecs
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kinema.atomic import atomic_write_text
from kinema.jsonl import read_json_objects
from kinema.video import IMAGE_EXTENSIONS, VideoError, probe_video

__all__ = [
    "MEDIA_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "ClipRecord",
    "ScanReport",
    "read_manifest",
    "scan_folder",
    "write_manifest",
]

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".webm", ".mkv", ".avi", ".mov", ".gif", ".mpg", ".mpeg", ".ogv", ".wmv"}
)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
CAPTION_SUFFIX = ".txt"  # NAME.txt beside NAME.mp4 is NAME.mp4's caption
# A caption's encoding is UTF-8 (with or without a BOM) or UTF-16/32 marked by its BOM; UTF-32's
# BOMs come first, as UTF-32-LE's starts with UTF-16-LE's.
_CAPTION_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

_FIELDS = ("path", "width", "height", "frames", "fps", "prompt", "caption")


@dataclass
class ClipRecord:
    """One clip (or image) of a manifest."""

    path: str  # absolute after read_manifest; written relative to the manifest when inside it
    width: int  # pixels, as probed
    height: int  # pixels, as probed
    frames: int  # frame count (1 for an image)
    fps: float  # frames per second (kinema.video.STILL_IMAGE_FPS for an image)
    prompt: str | None = None  # short text, e.g. a user-style prompt
    caption: str | None = None  # detailed text (re-captioning), e.g. a sidecar NAME.txt
    extra: dict[str, Any] = field(default_factory=dict)  # every other field of the line

    def to_json(self, relative_to: Path | None = None) -> dict[str, Any]:
        path = Path(self.path)
        if relative_to is not None and path.is_absolute() and path.is_relative_to(relative_to):
            path = path.relative_to(relative_to)
        line: dict[str, Any] = {
            "path": path.as_posix(),
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
            "fps": self.fps,
            "prompt": self.prompt,
            "caption": self.caption,
        }
        line.update({k: v for k, v in self.extra.items() if k not in _FIELDS})
        return line


def _check_record(line: dict[str, Any], where: str, folder: Path) -> ClipRecord:
    for name in ("width", "height", "frames"):
        value = line.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"{where}: {name!r} must be a positive int, got {value!r} "
                "(make manifests with `kinema data scan` or `kinema world make`)"
            )
    fps = line.get("fps")
    is_number = isinstance(fps, int | float) and not isinstance(fps, bool)
    if not is_number or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{where}: 'fps' must be a positive number, got {fps!r}")
    texts = {}
    for name in ("prompt", "caption"):
        value = line.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{where}: {name!r} must be a string or null, got {value!r}")
        texts[name] = value if value else None  # "" is the same as no text
    path = line.get("path")
    if not isinstance(path, str) or not path:
        raise ValueError(f"{where}: expected a non-empty string 'path', got {path!r}")
    return ClipRecord(
        path=str((folder / path).resolve()),
        width=line["width"],
        height=line["height"],
        frames=line["frames"],
        fps=float(fps),
        prompt=texts["prompt"],
        caption=texts["caption"],
        extra={k: v for k, v in line.items() if k not in _FIELDS},
    )


def read_manifest(path: str | os.PathLike[str]) -> list[ClipRecord]:
    """Records of a JSONL manifest, paths made absolute; ValueError naming a bad line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    folder = path.resolve().parent
    return [_check_record(line, where, folder) for where, line in read_json_objects(path)]


def write_manifest(records: Iterable[ClipRecord], path: str | os.PathLike[str]) -> Path:
    """Write records as JSONL atomically; paths inside the manifest's folder become relative."""
    path = Path(path)
    folder = path.resolve().parent
    text = "".join(json.dumps(r.to_json(folder), ensure_ascii=False) + "\n" for r in records)
    return atomic_write_text(path, text)


@dataclass
class ScanReport:
    """What :func:`scan_folder` found."""

    manifest: Path  # the manifest written
    found: int  # media files found (by extension)
    readable: int  # files probed successfully (= records in the manifest)
    with_captions: int  # readable files with a sidecar NAME.txt caption
    skipped: list[tuple[str, str]]  # (path, why) of files that could not be probed
    # (path, why) of sidecar captions that could not be decoded (their clips have no caption)
    bad_captions: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"found {self.found} media files: {self.readable} readable, "
            f"{len(self.skipped)} skipped, {self.with_captions} with captions"
            + (f", {len(self.bad_captions)} captions undecodable" if self.bad_captions else "")
        ]
        lines += [f"  skipped {path}: {why}" for path, why in self.skipped]
        lines += [f"  caption skipped {path}: {why}" for path, why in self.bad_captions]
        lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


def _media_files(folder: Path, recursive: bool, exclude: Sequence[Path]) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    files = []
    for p in folder.glob(pattern):
        hidden = any(part.startswith(".") for part in p.relative_to(folder).parts)
        media = p.suffix.lower() in MEDIA_EXTENSIONS and p.is_file() and not hidden
        if media and p.resolve() not in exclude:
            files.append(p)
    return sorted(files)


def _sidecar_caption(media: Path, bad_captions: list[tuple[str, str]]) -> str | None:
    """The text of NAME.txt beside ``media``, or None; one that does not decode is appended to
    ``bad_captions`` with why, never decoded with replacement characters."""
    sidecar = media.with_name(media.stem + CAPTION_SUFFIX)
    if not sidecar.is_file():
        return None
    data = sidecar.read_bytes()
    encoding = next((enc for bom, enc in _CAPTION_BOMS if data.startswith(bom)), "utf-8-sig")
    try:
        text = data.decode(encoding).strip()
    except UnicodeDecodeError as e:
        why = f"not {encoding} ({e.reason} at byte {e.start})"
    else:
        if "\x00" not in text:  # NULs: UTF-16/32 without a BOM, or not text at all
            return text or None
        why = "NUL characters (UTF-16 or UTF-32 without a BOM?)"
    bad_captions.append((str(sidecar), f"{why}; save it as UTF-8"))
    return None


def scan_folder(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    recursive: bool = True,
    progress: bool = True,
) -> ScanReport:
    """Probe every video and image under ``folder`` and write a manifest of the readable ones.

    Unreadable files are listed in the report (with why), not fatal; hidden files and folders are
    ignored. Files are sorted by path, so the manifest is the same on every run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    files = _media_files(folder, recursive, exclude=[Path(out).resolve()])
    records, skipped, bad_captions = [], [], []
    for media in tqdm(files, desc="probing", unit="file", disable=not progress):
        try:
            info = probe_video(media)
        except VideoError as e:
            skipped.append((str(media), str(e)))
            continue
        if info.width < 1 or info.height < 1 or info.num_frames < 1:
            skipped.append(
                (str(media), f"empty video: {info.width}x{info.height}, {info.num_frames} frames")
            )
            continue
        records.append(
            ClipRecord(
                path=str(media.resolve()),
                width=info.width,
                height=info.height,
                frames=info.num_frames,
                fps=info.fps,
                caption=_sidecar_caption(media, bad_captions),
                extra={"duration": info.duration, "codec": info.codec},
            )
        )
    manifest = write_manifest(records, out)
    return ScanReport(
        manifest=manifest,
        found=len(files),
        readable=len(records),
        with_captions=sum(r.caption is not None for r in records),
        skipped=skipped,
        bad_captions=bad_captions,
    )
