"""Re-captioning: detailed captions for a manifest's clips from a vision-language model.

Sora's report trains on highly descriptive captions written by a captioner model. Here the
captioner is any OpenAI-compatible chat endpoint that accepts images (vLLM, Ollama, llama.cpp
server with a vision model): a few keyframes of each clip go out as base64 JPEG ``image_url``
parts of one user message, and the reply becomes the record's caption.

The output manifest is append-only: each finished clip is one JSON line, written whole and
flushed, in the order clips finish. A rerun reads the output first, drops a torn last line
(the process was killed mid-write), and captions only the clips not yet there, so an
interrupted run resumes where it stopped. Clips that fail (unreadable video, endpoint error
after its retries) are reported and left out, so the next run tries them again.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kinema.language.openai_client import ChatClient, EndpointError
from kinema.video import VideoError, probe_video, read_video, resize_frames

__all__ = ["CaptionJob", "CaptionReport", "RateLimiter", "keyframes", "recaption_manifest"]

log = logging.getLogger(__name__)

CAPTION_SYSTEM = (
    "You write detailed captions of video clips for training a text-to-video model. You see "
    "frames of one clip in time order. Describe what is visible: every object with its size, "
    "color and shape, how each moves (direction and speed), what happens over the clip, the "
    "background, and how the camera moves. Plain sentences, no preamble, no lists, no guesses "
    "about what is not shown."
)


@dataclass(frozen=True)
class CaptionJob:
    """One re-captioning run."""

    manifest: Path  # input manifest.jsonl (each record has a "path", relative to its folder)
    out: Path  # output manifest; appended to, never rewritten
    keyframes: int = 4  # frames sent per clip, evenly spaced
    max_side: int = 384  # keyframes are scaled so their longer side is at most this
    workers: int = 4  # requests in flight at once
    requests_per_minute: float | None = None  # None: no rate limit
    field: str = "caption"  # the record field the caption is written to
    limit: int | None = None  # caption at most this many new clips this run

    def __post_init__(self) -> None:
        if self.keyframes < 1:
            raise ValueError(f"keyframes must be >= 1, got {self.keyframes}")
        if self.max_side < 16:
            raise ValueError(f"max_side must be >= 16 pixels, got {self.max_side}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be None (no limit) or >= 0, got {self.limit}")
        if self.requests_per_minute is not None and not self.requests_per_minute > 0:
            raise ValueError(f"requests per minute must be > 0, got {self.requests_per_minute}")
        if Path(self.manifest).resolve() == Path(self.out).resolve():
            raise ValueError(f"--out must differ from the input manifest {self.manifest}")


@dataclass
class CaptionReport:
    total: int  # clips in the input manifest
    already_done: int  # found in the output before this run
    captioned: int  # written by this run
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    seconds: float = 0.0


class RateLimiter:
    """At most `per_minute` starts per minute across threads (evenly spaced)."""

    def __init__(self, per_minute: float | None, clock: Callable[[], float] = time.monotonic):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def keyframes(path: str | os.PathLike[str], n: int, max_side: int) -> np.ndarray:
    """``n`` frames spread evenly over the clip (centers of n equal spans), ``(n, H, W, 3)`` uint8
    with the longer side at most ``max_side``; a still image gives one frame."""
    info = probe_video(path)
    n = min(n, info.num_frames)
    indices = [int((i + 0.5) * info.num_frames / n) for i in range(n)]
    frames = np.concatenate(
        [read_video(path, start=i / info.fps, max_frames=1).frames for i in indices]
    )
    scale = max_side / max(info.width, info.height)
    if scale < 1:
        frames = resize_frames(
            frames, max(1, round(info.height * scale)), max(1, round(info.width * scale))
        )
    return frames


def jpeg_data_url(frame: np.ndarray, quality: int = 90) -> str:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def caption_messages(frames: np.ndarray, duration: float) -> list[dict[str, Any]]:
    """The chat messages for one clip: instructions, then the keyframes as image parts."""
    text = (
        f"{len(frames)} frames of a {duration:.1f}-second clip, in time order. "
        "Write its detailed caption."
    )
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": jpeg_data_url(f)}} for f in frames]
    return [{"role": "system", "content": CAPTION_SYSTEM}, {"role": "user", "content": parts}]


def _parse_records(name: Path, text: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(absolute clip path, record as written) for each line of a manifest's text; paths are
    relative to the manifest's folder."""
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            path = Path(record["path"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{name}:{lineno}: not a manifest record with a path: {e}") from e
        yield (path if path.is_absolute() else name.parent / path).resolve(), record


def _done_paths(out: Path) -> set[Path]:
    """Clips already in the output; a torn last line (killed mid-write) is cut off first."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        log.warning("%s: dropping a torn last line (%d bytes)", out, len(data) - keep)
        with out.open("r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    return {path for path, _ in _parse_records(out, data.decode("utf-8"))}


class _Appender:
    """Appends whole JSON lines to the output, one thread at a time, flushed to disk."""

    def __init__(self, out: Path) -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def _caption_one(
    client: ChatClient, job: CaptionJob, limiter: RateLimiter, path: Path
) -> tuple[str, str]:
    """(caption, model) for one clip."""
    frames = keyframes(path, job.keyframes, job.max_side)
    duration = probe_video(path).duration
    limiter.wait()
    caption = client.complete(caption_messages(frames, duration), temperature=0.2, max_tokens=400)
    return caption, client.config.model


def recaption_manifest(
    job: CaptionJob, client: ChatClient, on_progress: Callable[[int, int], None] | None = None
) -> CaptionReport:
    """Caption every clip of ``job.manifest`` not yet in ``job.out``; see the module docstring."""
    start = time.monotonic()
    manifest, out = Path(job.manifest), Path(job.out)
    records = list(_parse_records(manifest, manifest.read_text()))
    done = _done_paths(out)
    pending = [(p, r) for p, r in records if p not in done]
    if job.limit is not None:
        pending = pending[: job.limit]
    report = CaptionReport(len(records), sum(p in done for p, _ in records), captioned=0)
    limiter, appender = RateLimiter(job.requests_per_minute), _Appender(out)
    out_dir = out.parent.resolve()
    pool = ThreadPoolExecutor(max_workers=job.workers)
    try:
        futures = {pool.submit(_caption_one, client, job, limiter, p): (p, r) for p, r in pending}
        for future in as_completed(futures):
            path, record = futures[future]
            try:
                caption, model = future.result()
            except (EndpointError, VideoError, ValueError) as e:
                log.warning("%s: %s", path, e)
                report.failed.append((str(path), str(e)))
                continue
            written = {**record, "path": os.path.relpath(path, out_dir), job.field: caption}
            written["recaption"] = {"model": model, "keyframes": job.keyframes}
            appender.write(written)
            report.captioned += 1
            if on_progress is not None:
                on_progress(report.captioned + len(report.failed), len(pending))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on Ctrl-C: drop what has not started
        appender.close()
    report.seconds = time.monotonic() - start
    return report
