"""Video and image I/O for Kinema: read, probe, resize/crop and write clips.

Decoding and encoding use PyAV (FFmpeg); still images and GIF writing use Pillow.

Conventions
-----------
* Frames are ``np.ndarray`` of shape ``(T, H, W, 3)``, dtype ``uint8``, RGB, C-contiguous.
* Times are in seconds, measured from the first frame of the video stream.
* Every failure to read or write a file raises :class:`VideoError` (whose message names the path
  and what went wrong; the underlying PyAV/OS/Pillow error is chained as ``__cause__``).
  Invalid *arguments* raise :class:`ValueError` instead.

Typical use::

    clip = read_video("in.mp4", start=1.0, end=3.0, fps=8)      # Video(frames, fps=8.0)
    frames = resize_and_crop(clip.frames, 256, 256, mode="center")
    write_video("out.mp4", frames, fps=clip.fps)                  # H.264, yuv420p, faststart
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, TypeVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageOps

from kinema.cpu import cpu_flags

__all__ = [
    "IMAGE_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "Video",
    "VideoError",
    "VideoInfo",
    "check_fps",
    "crop_frames",
    "probe_video",
    "read_image",
    "read_video",
    "resize_and_crop",
    "resize_frames",
    "write_png_frames",
    "write_video",
]

PathLike = str | os.PathLike[str]
T = TypeVar("T")

#: Extensions read with Pillow as a one-frame video (everything else goes through FFmpeg).
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
#: What :func:`write_video` can write (plus a directory path for PNG frames).
WRITE_EXTENSIONS = (".mp4", ".gif", ".png")
#: Frame rate reported for a still image read as a video.
STILL_IMAGE_FPS = 1.0

# Up to this many pixels per frame, the H.264 codecs and swscale run single-threaded: for small
# frames, starting thread pools (and x264's frame-threading latency) costs more than it saves.
_SINGLE_THREAD_PIXELS = 256 * 256
_EPS = 1e-6  # seconds; timestamp comparison tolerance
# Seconds a frame may start after an output time and still count as on screen at it when
# resampling to an fps: GIF delays are whole centiseconds, so GIF frames start up to 5 ms late.
_START_SLACK = 0.005
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


class VideoError(Exception):
    """A file could not be read or written (missing, corrupt, truncated or unsupported)."""


@dataclass
class Video:
    """A decoded clip.

    Attributes
    ----------
    frames : np.ndarray
        ``(T, H, W, 3)`` uint8 RGB.
    fps : float
        Frames per second of ``frames`` (after any ``stride``/``fps`` resampling).
    """

    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray) or f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            desc = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
            raise ValueError(f"Video.frames must be a (T, H, W, 3) uint8 array, got {desc}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"Video.fps must be a positive finite number, got {self.fps!r}")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Seconds covered by the clip: ``num_frames / fps``."""
        return self.num_frames / self.fps


@dataclass(frozen=True)
class VideoInfo:
    """Container metadata returned by :func:`probe_video`."""

    width: int
    height: int
    num_frames: int
    fps: float
    duration: float  # seconds
    codec: str = ""  # FFmpeg codec name ("h264", "vp9", ...); the image format for stills


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _wrap(path: PathLike, action: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` and turn any failure other than VideoError into a VideoError naming ``path``."""
    try:
        return fn()
    except VideoError:
        raise
    except Exception as e:  # PyAV, OS, Pillow and decoder errors of every kind
        raise VideoError(f"cannot {action} {os.fspath(path)!r}: {type(e).__name__}: {e}") from e


def _check_readable(path: PathLike) -> Path:
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as e:
        raise VideoError(f"cannot read {os.fspath(path)!r}: no such file") from e
    except OSError as e:
        raise VideoError(f"cannot read {os.fspath(path)!r}: {e}") from e
    if p.is_dir():
        raise VideoError(f"cannot read {os.fspath(path)!r}: is a directory, not a file")
    if st.st_size == 0:
        raise VideoError(f"cannot read {os.fspath(path)!r}: file is empty")
    return p


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _as_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """Validate ``(T, H, W, 3)`` or ``(H, W, 3)`` uint8 input; return ``(T, H, W, 3)``."""
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(
            f"{name} must have dtype uint8 (0..255), got {arr.dtype}; convert floats in [0, 1] "
            "with (x * 255).round().clip(0, 255).astype(np.uint8)"
        )
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (T, H, W, 3) or (H, W, 3), got {arr.shape}")
    if min(arr.shape[:3]) == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    return arr


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _check_size(height: object, width: object, what: str) -> tuple[int, int]:
    for name, v in (("height", height), ("width", width)):
        if not _is_int(v) or v <= 0:  # type: ignore[operator]
            raise ValueError(f"{what} {name} must be a positive int, got {v!r}")
    return int(height), int(width)  # type: ignore[call-overload]


def _check_read_args(
    start: float, end: float | None, stride: int, fps: float | None, max_frames: int | None
) -> None:
    if not (_is_real(start) and start >= 0):
        raise ValueError(f"start must be a finite number of seconds >= 0, got {start!r}")
    if end is not None and not (_is_real(end) and end > start):
        raise ValueError(f"end must be None or a number of seconds > start={start}, got {end!r}")
    if not (_is_int(stride) and stride >= 1):
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    if fps is not None:
        if not (_is_real(fps) and fps > 0):
            raise ValueError(f"fps must be None or a positive finite number, got {fps!r}")
        if stride != 1:
            raise ValueError(
                f"pass either stride or fps, not both (got stride={stride}, fps={fps})"
            )
    if max_frames is not None and not (_is_int(max_frames) and max_frames >= 1):
        raise ValueError(f"max_frames must be None or an int >= 1, got {max_frames!r}")


def _stream_fps(stream: av.VideoStream) -> float | None:
    """Mean frame rate from metadata: frame count / duration when both are stored (exact for
    variable frame delays, as in GIFs), else FFmpeg's average, guessed or base rate."""
    rates: list[float | Fraction | None] = []
    if stream.frames and stream.duration and stream.time_base:
        rates.append(stream.frames / float(stream.duration * stream.time_base))
    rates += [stream.average_rate, stream.guessed_rate, stream.base_rate]
    for rate in rates:
        if rate is not None and 0 < rate < 1000:
            return float(rate)
    return None


def _video_stream(container: av.container.InputContainer, path: PathLike) -> av.VideoStream:
    if not container.streams.video:
        raise VideoError(f"cannot read {os.fspath(path)!r}: no video stream in the file")
    return container.streams.video[0]


def _check_not_truncated(stream: av.VideoStream, path: Path) -> None:
    """Raise if the demuxer index (mp4/mov/avi) points past the end of the file.

    FFmpeg silently stops at EOF when a file is cut on a packet boundary; the index still lists
    the missing samples, so the byte range they need reveals the truncation.
    """
    entries = stream.index_entries
    n = len(entries)
    if n == 0:
        return
    needed = max((e.pos + e.size for e in entries[max(0, n - 64) :] if e.pos >= 0), default=0)
    size = path.stat().st_size
    if needed > size:
        raise VideoError(
            f"cannot read {os.fspath(path)!r}: file is truncated "
            f"(index needs {needed} bytes, file has {size})"
        )


def _open_video(path: Path) -> tuple[av.container.InputContainer, av.VideoStream]:
    container = av.open(os.fspath(path), "r")
    try:
        stream = _video_stream(container, path)
        _check_not_truncated(stream, path)
        cc = stream.codec_context
        if (cc.width or 0) * (cc.height or 0) > _SINGLE_THREAD_PIXELS:
            cc.thread_type = "AUTO"  # frame + slice threads pay off only for larger frames
    except BaseException:
        container.close()
        raise
    return container, stream


def _stamped(
    container: av.container.InputContainer, stream: av.VideoStream, origin: int | None
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Decode frames as ``(seconds since the stream's first frame, frame)``."""
    tb = stream.time_base
    fps = _stream_fps(stream) or STILL_IMAGE_FPS
    for i, frame in enumerate(container.decode(stream)):
        if frame.pts is None or tb is None:
            yield i / fps, frame  # no timestamps: assume a constant rate
            continue
        if origin is None:
            origin = frame.pts
        yield float((frame.pts - origin) * tb), frame


def _timed_frames(
    container: av.container.InputContainer, stream: av.VideoStream, start: float
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Like :func:`_stamped`, but first seeks to the keyframe at or before ``start`` when the
    stream has timestamps (so frames before ``start`` may still be yielded). If the seek fails
    or lands after ``start``, decoding restarts from the beginning."""
    origin = stream.start_time
    if start > 0 and stream.time_base is not None and origin is not None:
        # Decode one frame first: FFmpeg detects some encoders' quirks from the first packet
        # (old x264 4:4:4 streams decode with wrong colors after a cold seek).
        next(_stamped(container, stream, origin), None)
        try:
            container.seek(origin + int(start / stream.time_base), stream=stream, backward=True)
        except av.FFmpegError:  # not seekable: decode from the beginning
            pass
        else:
            frames = _stamped(container, stream, origin)
            first = next(frames, None)
            if first is not None and first[0] <= start + _EPS:
                yield first
                yield from frames
                return
            container.seek(0)
    yield from _stamped(container, stream, origin)


def _sws_threads(height: int, width: int) -> int | None:
    # swscale's default thread pool costs milliseconds to start; for small frames use one thread
    return 1 if height * width <= _SINGLE_THREAD_PIXELS else None


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (for ``np.rot90``) that show ``frame`` upright.

    Phones store portrait video as landscape frames plus a display matrix; PyAV reports its
    rotation in degrees counter-clockwise (-90: turn clockwise, as players do).
    """
    return round(frame.rotation / 90) % 4


def _to_rgb(
    reformatter: VideoReformatter, frame: av.VideoFrame, height: int, width: int
) -> np.ndarray:
    # (H, W, 3) uint8, upright. Reusing one reformatter keeps one swscale context for the whole
    # clip; the size is forced so that a mid-stream resolution change cannot break stacking.
    threads = _sws_threads(height, width)
    rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24", threads=threads)
    turns = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb.to_ndarray(), turns)) if turns else rgb.to_ndarray()


def _frame_seconds(frame: av.VideoFrame, stream: av.VideoStream) -> float | None:
    """How long ``frame`` is shown, from its own duration field; None if not stored."""
    if frame.duration and stream.time_base is not None:
        return float(frame.duration * stream.time_base)
    return None


def _on_screen(
    timed: Iterator[tuple[float, av.VideoFrame]],
    stream: av.VideoStream,
    start: float,
    end: float | None,
    fps: float,
) -> Iterator[av.VideoFrame]:
    """For each output time ``start + k / fps`` before ``end`` and the end of the video, the
    frame on screen then: the last one that starts at or before it, so a frame held for a second
    is repeated for a second (variable frame rates). The last frame lasts its own duration
    (else the previous interval). A start up to ``_START_SLACK`` (half an output frame at most)
    after an output time counts as at it: GIF delays are whole centiseconds, so a GIF frame
    meant to start at 0.375 s starts at 0.38 s."""
    slack = min(_START_SLACK, 0.5 / fps) + _EPS
    stop_at_end = math.inf if end is None else end - _EPS
    k = 0  # next output frame

    def show(frame: av.VideoFrame, until: float) -> Iterator[av.VideoFrame]:
        nonlocal k
        while start + k / fps < min(until - slack, stop_at_end):
            yield frame
            k += 1

    prev: tuple[float, av.VideoFrame] | None = None  # the frame on screen before time t
    gap = None  # seconds between the last two frames
    for t, frame in timed:
        if prev is not None:
            yield from show(prev[1], t)
            gap = t - prev[0]
        if t >= stop_at_end:
            return
        prev = (t, frame)
    if prev is not None:
        t, frame = prev
        fallback = gap or 1.0 / (_stream_fps(stream) or STILL_IMAGE_FPS)
        yield from show(frame, t + (_frame_seconds(frame, stream) or fallback))


def _decode_range(
    path: Path,
    start: float,
    end: float | None,
    stride: int,
    fps: float | None,
    max_frames: int | None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[list[np.ndarray], float, float | None]:
    """Decode the frames :func:`read_video` selects (``transform`` applied to each).

    Returns ``(frames, source_fps, last_timestamp)``: a list of ``(H, W, 3)`` uint8 arrays (one
    array may repeat when upsampling), the source rate (from metadata, else from timestamps)
    and the timestamp of the last decoded frame (None if nothing decoded).
    """
    container, stream = _open_video(path)
    with container:
        height, width = stream.codec_context.height, stream.codec_context.width
        out: list[np.ndarray] = []
        to_rgb = VideoReformatter()
        converted: tuple[av.VideoFrame | None, np.ndarray] = (None, np.empty(0, np.uint8))

        def emit(frame: av.VideoFrame) -> bool:
            """Append ``frame``; True once ``max_frames`` is reached."""
            nonlocal converted, height, width
            if not height or not width:
                height, width = frame.height, frame.width
            if converted[0] is not frame:  # upsampling repeats a frame: convert it once
                rgb = _to_rgb(to_rgb, frame, height, width)
                converted = (frame, rgb if transform is None else transform(rgb))
            out.append(converted[1])
            return max_frames is not None and len(out) >= max_frames

        first_t: float | None = None  # first in-range timestamp
        last_t: float | None = None  # last decoded timestamp
        prev_t: float | None = None  # last in-range timestamp
        n_in_range = 0

        def inside(t: float) -> bool:
            return t >= start - _EPS and (end is None or t < end - _EPS)

        def decoded() -> Iterator[tuple[float, av.VideoFrame]]:
            """Frames up to the first at or after ``end``, counting those inside the range."""
            nonlocal first_t, last_t, prev_t, n_in_range
            for t, frame in _timed_frames(container, stream, start):
                last_t = t
                if inside(t):
                    first_t = t if first_t is None else first_t
                    prev_t = t
                    n_in_range += 1
                yield t, frame
                if end is not None and t >= end - _EPS:
                    return

        if fps is not None:
            for frame in _on_screen(decoded(), stream, start, end, fps):
                if emit(frame):
                    break
        else:
            chosen = (f for t, f in decoded() if inside(t))
            for frame in itertools.islice(chosen, 0, None, stride):
                if emit(frame):
                    break

        src_fps = _stream_fps(stream)
        if src_fps is None:
            span = prev_t - first_t if prev_t is not None and first_t is not None else 0.0
            src_fps = (n_in_range - 1) / span if n_in_range > 1 and span > 0 else STILL_IMAGE_FPS
        return out, src_fps, last_t


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_image(path: PathLike) -> np.ndarray:
    """Read a still image as ``(H, W, 3)`` uint8 RGB (EXIF orientation applied, alpha dropped).

    16-bit images are scaled to 8 bits. Raises VideoError if the file is missing or unreadable.
    """
    p = _check_readable(path)

    def load() -> np.ndarray:
        with Image.open(p) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
                gray = (np.asarray(im, dtype=np.float64).clip(0, 65535) / 257.0).round()
                return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1)
            if im.mode == "F":
                gray = np.asarray(im, dtype=np.float64).clip(0, 255).round()
                return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=-1)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()

    return _wrap(path, "read image", load)


def probe_video(path: PathLike) -> VideoInfo:
    """Read size, frame count, frame rate and duration from container metadata.

    The size is the displayed one: for a stream rotated by ±90° (phone video), the width is the
    coded height. The first frame is decoded for its rotation; the others are decoded (and
    counted) only when the container stores no frame count (e.g. WebM, MKV, GIF). A still
    image (see ``IMAGE_EXTENSIONS``) is reported as one frame at ``STILL_IMAGE_FPS``.
    """
    p = _check_readable(path)
    if _is_image(p):

        def probe_image() -> VideoInfo:
            with Image.open(p) as im:
                w, h = im.size
                if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientation: rotated 90°
                    w, h = h, w
                return VideoInfo(w, h, 1, STILL_IMAGE_FPS, 1.0 / STILL_IMAGE_FPS, im.format or "")

        return _wrap(path, "probe image", probe_image)

    def probe() -> VideoInfo:
        container, stream = _open_video(p)
        with container:
            cc = stream.codec_context
            fps = _stream_fps(stream)
            timed = _timed_frames(container, stream, 0.0)
            first = next(timed, None)  # its display matrix says how the frames are turned
            n = int(stream.frames or 0)
            last_t = None
            if n <= 0 and first is not None:
                n, last_t = 1, first[0]
                for t, _ in timed:
                    n, last_t = n + 1, t
            if fps is None:
                fps = (n - 1) / last_t if last_t and n > 1 else 1.0
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = n / fps
            if n == 0:
                raise VideoError(f"cannot read {os.fspath(path)!r}: video stream has no frames")
            width, height = int(cc.width), int(cc.height)
            if first is not None and _quarter_turns(first[1]) % 2:  # shown as portrait
                width, height = height, width
            return VideoInfo(width, height, n, fps, duration, cc.name)

    return _wrap(path, "probe video", probe)


def read_video(
    path: PathLike,
    *,
    start: float = 0.0,
    end: float | None = None,
    stride: int = 1,
    fps: float | None = None,
    max_frames: int | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Video:
    """Decode a clip (mp4/H.264, avi, webm, mkv, gif, ...) to RGB frames.

    Parameters
    ----------
    path
        Any file FFmpeg can demux; still images (``IMAGE_EXTENSIONS``) are read with Pillow as a
        one-frame video at ``STILL_IMAGE_FPS`` (or ``fps``), ignoring start/end/stride. Frames
        are turned upright by the stream's rotation (display matrix), as players show them.
    start, end
        Keep frames whose timestamp ``t`` satisfies ``start <= t < end`` (seconds from the first
        frame; ``end=None`` means the end of the video). Seeks to ``start`` when possible.
    stride
        Keep every ``stride``-th frame of that range, starting with the first. Output fps is
        ``source_fps / stride``.
    fps
        Resample to this rate instead: output frame ``j`` is the source frame on screen at
        ``start + j / fps`` (the last one starting at or before it; a start up to 5 ms later,
        as GIF centisecond delays make, counts as at it), until ``end`` or the end of the
        video's last frame. Frames repeat when upsampling or when the source holds a frame
        (variable frame rate). Exclusive with ``stride``.
    max_frames
        Stop after this many output frames.
    transform
        Applied to each ``(H, W, 3)`` frame as it is decoded (e.g. a resize, so that a long
        clip never sits in memory at full size); it must return frames of one shape.

    Returns
    -------
    Video
        ``frames`` ``(T, H, W, 3)`` uint8 RGB and the output ``fps``.

    Raises
    ------
    VideoError
        The file is missing, empty, corrupt, truncated, or has no decodable video stream.
    ValueError
        An argument is invalid, or ``start`` lies at or beyond the end of the video.
    """
    _check_read_args(start, end, stride, fps, max_frames)
    p = _check_readable(path)
    if _is_image(p):
        image = read_image(p) if transform is None else transform(read_image(p))
        return Video(image[None], float(fps) if fps is not None else STILL_IMAGE_FPS)

    frames, src_fps, last_t = _wrap(
        path,
        "read video",
        lambda: _decode_range(p, start, end, stride, fps, max_frames, transform),
    )
    if not frames:
        if last_t is None:
            raise VideoError(f"cannot read {os.fspath(path)!r}: no decodable video frames")
        raise ValueError(
            f"start={start} is at or past the last frame of {os.fspath(path)!r} "
            f"(last frame at {last_t:.3f} s)"
        )
    out_fps = float(fps) if fps is not None else src_fps / stride
    return Video(np.stack(frames), out_fps)


# --------------------------------------------------------------------------------------------
# resizing and cropping
# --------------------------------------------------------------------------------------------


def resize_frames(
    frames: np.ndarray,
    height: int,
    width: int,
    *,
    resample: Literal["bicubic", "lanczos", "bilinear", "area", "nearest"] = "bicubic",
) -> np.ndarray:
    """Resize ``(T, H, W, 3)`` (or ``(H, W, 3)``) uint8 frames to ``(T, height, width, 3)``.

    Uses Pillow per frame, which antialiases when downscaling (the filter support grows with
    the scale factor). The aspect ratio is *not* preserved; see :func:`resize_and_crop`.
    """
    height, width = _check_size(height, width, "resize")
    if resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")
    single = np.asarray(frames).ndim == 3
    arr = _as_frames(frames)
    if arr.shape[1:3] == (height, width):
        out = arr.copy()
    else:
        f = _RESAMPLE[resample]
        out = np.empty((arr.shape[0], height, width, 3), np.uint8)
        for i, frame in enumerate(arr):
            out[i] = np.asarray(Image.fromarray(frame).resize((width, height), f))
    return out[0] if single else out


def crop_frames(
    frames: np.ndarray,
    height: int,
    width: int,
    *,
    mode: Literal["center", "random"] = "center",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Crop the same ``height x width`` window from every frame.

    ``mode="center"`` takes the central window (the extra pixel of an odd margin goes to the
    bottom/right); ``mode="random"`` draws the top-left corner uniformly with ``rng`` (a fresh
    unseeded generator when None). Returns a contiguous copy, ``(T, height, width, 3)``
    (or ``(height, width, 3)`` for a single image).
    """
    height, width = _check_size(height, width, "crop")
    single = np.asarray(frames).ndim == 3
    arr = _as_frames(frames)
    H, W = arr.shape[1:3]
    if height > H or width > W:
        raise ValueError(f"crop {height}x{width} (HxW) is larger than the frames ({H}x{W})")
    if mode == "center":
        top, left = (H - height) // 2, (W - width) // 2
    elif mode == "random":
        rng = rng if rng is not None else np.random.default_rng()
        top = int(rng.integers(0, H - height + 1))
        left = int(rng.integers(0, W - width + 1))
    else:
        raise ValueError(f"mode must be 'center' or 'random', got {mode!r}")
    out = np.ascontiguousarray(arr[:, top : top + height, left : left + width])
    return out[0] if single else out


def resize_and_crop(
    frames: np.ndarray,
    height: int,
    width: int,
    *,
    mode: Literal["center", "random"] = "center",
    rng: np.random.Generator | None = None,
    resample: Literal["bicubic", "lanczos", "bilinear", "area", "nearest"] = "bicubic",
) -> np.ndarray:
    """Scale (keeping aspect) so the frames cover ``height x width``, then crop to exactly that."""
    height, width = _check_size(height, width, "target")
    arr = np.asarray(frames)
    _as_frames(arr)
    H, W = arr.shape[-3:-1]
    scale = max(height / H, width / W)
    new_h = max(height, round(H * scale))
    new_w = max(width, round(W * scale))
    if (new_h, new_w) != (H, W):
        arr = resize_frames(arr, new_h, new_w, resample=resample)
    return crop_frames(arr, height, width, mode=mode, rng=rng)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _temp_sibling(path: Path, parent: Path | None = None) -> Path:
    # A hidden, unique name in the same directory (same filesystem: os.replace is atomic).
    # Unlike tempfile.mkstemp this leaves the permissions to the umask (0644, not 0600).
    parent = path.parent if parent is None else parent
    return parent / f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}"


def _atomic_file(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temp file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path)
    try:
        write(os.fspath(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_fps(fps: float) -> float:
    """``fps`` as a float if the writers take it (a number in (0, 1000]), else a ValueError."""
    if not (_is_real(fps) and 0 < fps <= 1000):
        raise ValueError(f"fps must be a number in (0, 1000], got {fps!r}")
    return float(fps)


def _write_mp4(tmp: str, frames: np.ndarray, fps: float, crf: int) -> None:
    T, H, W, _ = frames.shape
    rate = Fraction(fps).limit_denominator(10_000)
    with av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        cc = stream.codec_context
        cc.thread_count = 1 if H * W <= _SINGLE_THREAD_PIXELS else 0
        # Tag BT.709 limited range, the conversion used below, so that players agree.
        cc.colorspace = cc.color_primaries = cc.color_trc = 1  # AVCOL_*_BT709
        cc.color_range = 1  # AVCOL_RANGE_MPEG
        options = {"crf": str(crf), "preset": "veryfast", **_x264_instruction_set()}
        if crf > 0:  # lossless (crf 0) needs High 4:4:4, which browsers do not play
            options["profile"] = "high"
        stream.options = options
        to_yuv = VideoReformatter()  # one swscale context per clip, not one per frame
        threads = _sws_threads(H, W)
        for i in range(T):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame = to_yuv.reformat(
                frame,
                format="yuv420p",
                dst_colorspace="itu709",
                dst_color_range=1,  # limited ("MPEG") range
                threads=threads,
            )
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _x264_instruction_set() -> dict[str, str]:
    """x264 options that keep it to AVX2 on a CPU with AVX-512.

    There its AVX-512 code coded the same 64x64 frames differently from one write to the next
    (42 of 240 writes of noisy clips, 7 of 240 of world clips; pixels off by up to 24 levels), so
    a seed did not reproduce an mp4. Capped at AVX2, none of 480 differed; a write took 6.0 ms
    either way at 64x64 and 61 against 52 ms at 256x256 (`benchmarks/mp4_determinism.py`;
    docs/generation.md, "Reproducible files").
    """
    flags = cpu_flags()
    return {"x264-params": "asm=avx2"} if {"avx512f", "avx2"} <= flags else {}


def _gif_durations_ms(n: int, fps: float) -> list[int]:
    # GIF delays are whole centiseconds; round the cumulative time so the average rate is exact.
    cs = [round(i * 100 / fps) for i in range(n + 1)]
    return [max(1, b - a) * 10 for a, b in itertools.pairwise(cs)]


def _write_gif(tmp: str, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(f) for f in frames]
    images[0].save(
        tmp,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=_gif_durations_ms(len(images), fps),
        loop=0,
        optimize=False,
    )


def _save_png(tmp: str, frame: np.ndarray) -> None:
    Image.fromarray(frame).save(tmp, format="PNG", compress_level=1)


def write_png_frames(
    directory: PathLike, frames: np.ndarray, *, name: str = "frame_%05d.png"
) -> Path:
    """Write frames as ``directory/frame_00000.png``, ``frame_00001.png``, ...

    ``name`` is a printf-style pattern with one integer field. The frames are first written to
    a temporary folder next to (or inside) ``directory`` and then renamed into place, so no
    half-written PNG is ever visible; leftover ``name % i`` files with ``i >= T`` from an
    earlier, longer clip are removed. Returns ``directory`` as a Path.
    """
    arr = _as_frames(frames)
    try:
        names = [name % i for i in range(arr.shape[0])]
    except (TypeError, ValueError) as e:
        raise ValueError(f"name must be a pattern like 'frame_%05d.png', got {name!r}") from e
    if len(set(names)) != len(names) or any(os.sep in n or n.startswith(".") for n in names):
        raise ValueError(f"name must be a pattern like 'frame_%05d.png', got {name!r}")
    out = Path(directory)

    def write() -> None:
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"{out} exists and is not a directory")
        fresh = not out.exists()
        stage_parent = out.parent if fresh else out
        stage_parent.mkdir(parents=True, exist_ok=True)
        stage = _temp_sibling(out, stage_parent)
        stage.mkdir()
        try:
            for n, frame in zip(names, arr, strict=True):
                _save_png(os.fspath(stage / n), frame)
            if fresh:
                os.replace(stage, out)
                return
            for n in names:
                os.replace(stage / n, out / n)
            i = len(names)
            while (stale := out / (name % i)).is_file():
                stale.unlink()
                i += 1
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)

    _wrap(directory, "write PNG frames to", write)
    return out


def write_video(path: PathLike, frames: np.ndarray, fps: float = 8.0, *, crf: int = 18) -> Path:
    """Write ``(T, H, W, 3)`` (or one ``(H, W, 3)``) uint8 RGB frames; the format follows ``path``.

    * ``.mp4``: H.264 (libx264, ``preset=veryfast``, ``crf``), yuv420p, High profile,
      BT.709 tagged, ``+faststart``: it plays in browsers. yuv420p needs even sizes, so an odd
      height/width is padded by one row/column replicating the edge; the file is then one pixel
      larger in that dimension (e.g. 63x45 frames are stored as 64x46).
    * ``.gif``: animated, looping forever, per-frame delays from ``fps`` (GIF delays are whole
      centiseconds and browsers slow delays under 20 ms, so keep ``fps <= 50``). Colours are
      quantised to 256 per frame, and Pillow merges identical consecutive frames into one
      longer frame.
    * ``.png``: a single frame to that file; or, if the name holds a printf field
      (``"dir/img_%04d.png"``), one PNG per frame via :func:`write_png_frames`.
    * no extension (or an existing directory): PNG frames ``frame_00000.png``, ... inside it.

    Files are written to a temp file in the same directory and renamed into place, so an error
    never leaves a half-written output. Parent directories are created. Returns the output path.

    Raises
    ------
    ValueError
        Bad frames (dtype/shape), fps, crf or extension.
    VideoError
        Encoding or writing failed.
    """
    arr = _as_frames(frames)
    fps = check_fps(fps)
    if not (_is_int(crf) and 0 <= crf <= 51):
        raise ValueError(f"crf must be an int in [0, 51] (lower is better quality), got {crf!r}")
    p = Path(path)
    ext = p.suffix.lower()
    if p.is_dir() or ext == "":
        return write_png_frames(p, arr)
    if ext == ".png" and "%" in p.name:
        return write_png_frames(p.parent, arr, name=p.name)
    if ext == ".png":
        if arr.shape[0] != 1:
            raise ValueError(
                f"{os.fspath(path)!r} is a single PNG but got {arr.shape[0]} frames; use a "
                "pattern such as 'out/frame_%05d.png' or a directory path for several frames"
            )
        _wrap(path, "write", lambda: _atomic_file(p, lambda tmp: _save_png(tmp, arr[0])))
        return p
    if ext == ".gif":
        _wrap(path, "write", lambda: _atomic_file(p, lambda tmp: _write_gif(tmp, arr, fps)))
        return p
    if ext == ".mp4":
        _, H, W, _ = arr.shape
        if H % 2 or W % 2:  # yuv420p needs even sizes: replicate the last row/column
            arr = np.pad(arr, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)), mode="edge")
        _wrap(path, "write", lambda: _atomic_file(p, lambda tmp: _write_mp4(tmp, arr, fps, crf)))
        return p
    raise ValueError(
        f"cannot write {os.fspath(path)!r}: unknown extension {p.suffix!r}; valid: "
        f"{', '.join(WRITE_EXTENSIONS)}, a '%05d.png' pattern, or a directory"
    )
