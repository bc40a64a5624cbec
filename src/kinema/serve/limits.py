"""The studio's limits, checked on the server for every request (the widgets only mirror them).

Every check raises `LimitError` (a ValueError) whose message names the value, the limit, and
what would be accepted, so a client of the HTTP API gets the same explanation as the page.
"""

from __future__ import annotations

import math
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from kinema.video import VideoError, probe_video

__all__ = [
    "LimitError",
    "StudioLimits",
    "check_frames",
    "check_guidance",
    "check_prompt",
    "check_seed",
    "check_side",
    "check_size",
    "check_steps",
    "check_strength",
    "check_upload",
]

MAX_SEED = 2**32 - 1
_ALLOWED_CONTROL = {"\n", "\t"}


class LimitError(ValueError):
    """A request breaks one of the studio's limits."""


@dataclass(frozen=True)
class StudioLimits:
    """What one request may ask for, and how much the server keeps."""

    max_prompt_chars: int = 1000  # prompt and expanded prompt (a detailed caption is ~500)
    max_negative_chars: int = 300
    min_size: int = 32  # pixels, either side
    max_size: int = 256  # pixels, either side
    size_multiple: int = 16  # both sides are multiples of this (VAE compression × patch)
    max_frames: int = 129  # frames one request makes (t2v, i2v, edit, loop, extend, connect)
    max_long_frames: int = 481  # frames of a `long` video
    max_steps: int = 100
    max_guidance: float = 20.0
    max_upload_bytes: int = 50 * 1024 * 1024
    max_upload_side: int = 4096  # pixels, the longer side of an uploaded image or video
    max_upload_frames: int = 2000
    max_queue: int = 8  # requests waiting behind the one running
    keep_outputs: int = 200  # result files kept on disk, newest first
    output_ttl_s: float = 24 * 3600  # result files older than this are deleted
    gallery_size: int = 12  # recent results shown per browser session

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError(
                f"need 1 <= min_size <= max_size, got {self.min_size}, {self.max_size}"
            )
        if self.size_multiple < 1 or self.max_size < self.size_multiple:
            raise ValueError(
                f"size_multiple must be in [1, max_size={self.max_size}], got {self.size_multiple}"
            )
        for name in ("max_frames", "max_long_frames", "max_steps", "max_queue", "keep_outputs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def check_prompt(text: object, limit: int, what: str = "prompt", required: bool = True) -> str:
    """The prompt with surrounding whitespace stripped; control characters are refused."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise LimitError(f"{what} must be text, got {type(text).__name__}")
    text = text.strip()
    if required and not text:
        raise LimitError(f"{what} is empty; describe the video to make")
    if len(text) > limit:
        raise LimitError(
            f"{what} is {len(text)} characters long; the limit is {limit}. Shorten it "
            f"(a detailed caption is usually 200-600 characters)"
        )
    bad = sorted({c for c in text if unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROL})
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise LimitError(f"{what} contains control characters ({codes}); remove them")
    return text


def _as_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LimitError(f"{what} must be a whole number, got {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise LimitError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def _as_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LimitError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def check_size(width: object, height: object, limits: StudioLimits) -> tuple[int, int]:
    return check_side(width, limits, "width"), check_side(height, limits, "height")


def check_side(value: object, limits: StudioLimits, what: str) -> int:
    """One side in pixels, within the size range and a multiple of the size multiple."""
    v = _as_int(value, what)
    lo, hi, m = limits.min_size, limits.max_size, limits.size_multiple
    if not lo <= v <= hi:
        raise LimitError(f"{what} {v} is out of range: sizes go from {lo} to {hi} pixels")
    if v % m:
        down, up = v - v % m, v - v % m + m
        near = " or ".join(str(s) for s in (down, up) if lo <= s <= hi)
        raise LimitError(f"{what} {v} is not a multiple of {m}; try {near}")
    return v


def check_frames(num_frames: object, limit: int, what: str = "frames") -> int:
    n = _as_int(num_frames, what)
    if not 1 <= n <= limit:
        raise LimitError(f"{what} {n} is out of range: 1 to {limit} per request")
    return n


def check_steps(steps: object, limits: StudioLimits) -> int:
    n = _as_int(steps, "steps")
    if not 1 <= n <= limits.max_steps:
        raise LimitError(f"steps {n} is out of range: 1 to {limits.max_steps}")
    return n


def check_guidance(guidance: object, limits: StudioLimits) -> float:
    g = _as_float(guidance, "guidance")
    if not 0.0 <= g <= limits.max_guidance:
        raise LimitError(f"guidance {g:g} is out of range: 0 to {limits.max_guidance:g}")
    return g


def check_seed(seed: object) -> int:
    """-1 (draw one) or 0..2^32-1."""
    s = _as_int(seed, "seed")
    if not -1 <= s <= MAX_SEED:
        raise LimitError(f"seed {s} is out of range: -1 (random) or 0 to {MAX_SEED}")
    return s


def check_strength(strength: object) -> float:
    s = _as_float(strength, "strength")
    if not 0.0 < s <= 1.0:
        raise LimitError(f"strength {s:g} is out of range: more than 0, at most 1")
    return s


def _bytes(n: int) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_upload(path: object, limits: StudioLimits, what: str) -> Path:
    """An uploaded image or video: present, within the byte, pixel and frame limits, readable."""
    if not isinstance(path, str | os.PathLike):
        raise LimitError(f"{what} must be an uploaded file, got {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise LimitError(f"{what} upload is missing on the server; upload it again")
    size = p.stat().st_size
    if size > limits.max_upload_bytes:
        raise LimitError(
            f"{what} is {_bytes(size)}; uploads are limited to {_bytes(limits.max_upload_bytes)}"
        )
    try:
        info = probe_video(p)
    except VideoError as e:
        raise LimitError(f"{what} is not a readable image or video: {e}") from e
    if max(info.width, info.height) > limits.max_upload_side:
        raise LimitError(
            f"{what} is {info.width}x{info.height}; the longer side may be at most "
            f"{limits.max_upload_side} pixels"
        )
    if info.num_frames > limits.max_upload_frames:
        raise LimitError(
            f"{what} has {info.num_frames} frames; uploads are limited to "
            f"{limits.max_upload_frames} frames"
        )
    return p
