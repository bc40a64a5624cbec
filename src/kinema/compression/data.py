"""Training clips for Kinema's video VAE: procedural world clips, real video, and camera moves
over real photos, mixed at random sizes, aspect ratios and lengths.

Sources (each gives uint8 clips ``(T, H, W, 3)`` for a numpy Generator, a size and a length):

``WorldSource``      scenes from ``kinema.world`` rendered at the requested size (8 fps).
``VideoFileSource``  random windows of real video files: random start, stride 1–3, random crop at
                     a random scale (the crop is resized so its short side is between the target
                     and ~2× the target). Only the window is decoded (a seek, the stride as a
                     frame rate); decoded frames are kept in memory, downscaled to a short side of
                     256, in a byte-bounded LRU cache (all three training files fit in ~330 MB).
``PhotoPanSource``   a crop window that pans and/or zooms smoothly across a real photo, resampled
                     with an antialiasing tent filter: real texture, real (rigid) motion.

``MixedClipDataset`` draws a size, a length and a source (by weight) per clip and returns float
tensors ``(3, T, H, W)`` in ``[-1, 1]``. Everything is a pure function of the Generator it is given
(or of ``(seed, index)`` when iterated), never of cache state.

Held-out split (evaluation footage is never sampled for training)
---------------------------------------------------------------
* Files named in ``HELD_OUT_FILES`` (``realshort.mp4``) are evaluation-only: ``VideoFileSource``
  refuses them.
* Every other file is cut in time at ``held_out_start(num_frames)`` = ``int(0.8 · num_frames)``
  frames, i.e. at ``t_split = held_out_start(n) / fps`` seconds. Training reads only frames with
  timestamp ``t < t_split`` (``read_video(..., end=t_split)``); ``evaluation_clips()`` reads only
  ``t >= t_split``. For cockatoo.mp4 (280 frames at 20 fps) that is frames 224–279, for the gradio
  world.mp4 (901 at 30 fps) frames 720–900, for newtonscradle.gif the last 0.18 s.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from kinema.assets import AssetUnavailableError, gradio_world_clip, imageio_clips, photos
from kinema.compression.pixels import to_video_tensor
from kinema.video import VideoError, crop_frames, probe_video, read_video, resize_frames
from kinema.world import render_scene, sample_scene

__all__ = [
    "DEFAULT_LENGTHS",
    "DEFAULT_SIZES",
    "DEFAULT_WEIGHTS",
    "HELD_OUT_FILES",
    "TRAIN_FRACTION",
    "ClipSample",
    "ClipSource",
    "ClipSourceError",
    "MixedClipDataset",
    "PhotoMotion",
    "PhotoMove",
    "PhotoPanSource",
    "VideoFileSource",
    "VideoWindow",
    "WorldSource",
    "default_sources",
    "evaluation_clips",
    "held_out_start",
    "training_video_files",
]

DEFAULT_SIZES = ((64, 64), (64, 96), (96, 64), (128, 128))  # (height, width) choices
DEFAULT_LENGTHS = (1, 9, 17, 33)  # frame counts; the causal VAE takes 1 + 4k frames
DEFAULT_WEIGHTS = {"world": 0.5, "video": 0.25, "photo": 0.25}  # by ClipSource.name

TRAIN_FRACTION = 0.8  # leading share of each real video used for training; the rest is held out
HELD_OUT_FILES = frozenset({"realshort.mp4"})  # evaluation-only files, never sampled for training


class ClipSourceError(RuntimeError):
    """A source cannot produce the requested clip (no usable file left, clip too long)."""


class ClipSource(Protocol):
    """Anything that turns (rng, height, width, num_frames) into a uint8 ``(T, H, W, 3)`` clip."""

    name: str  # the key of this source in MixedClipDataset weights
    skipped: dict[str, str]  # {item: reason} of inputs left out (unreadable files, ...)

    @property
    def max_frames(self) -> int | None:
        """Longest clip this source can produce; None if unlimited."""
        ...

    def sample(
        self, rng: np.random.Generator, height: int, width: int, num_frames: int
    ) -> np.ndarray: ...


def _check_request(height: int, width: int, num_frames: int) -> None:
    for name, v in (("height", height), ("width", width), ("num_frames", num_frames)):
        if not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo


# --------------------------------------------------------------------------------------------
# procedural world
# --------------------------------------------------------------------------------------------


class WorldSource:
    """Random ``kinema.world`` scenes rendered at the requested size and length."""

    name = "world"
    max_frames = None

    def __init__(self, fps: float = 8.0) -> None:
        self.fps = fps
        self.skipped: dict[str, str] = {}

    def sample(
        self, rng: np.random.Generator, height: int, width: int, num_frames: int
    ) -> np.ndarray:
        _check_request(height, width, num_frames)
        spec = sample_scene(rng, width=width, height=height, num_frames=num_frames, fps=self.fps)
        return render_scene(spec)  # (T, H, W, 3) uint8


# --------------------------------------------------------------------------------------------
# real video files
# --------------------------------------------------------------------------------------------


def held_out_start(num_frames: int) -> int:
    """First held-out frame of a video with ``num_frames`` frames: ``[0, n)`` trains, the rest
    is held out for evaluation."""
    return int(num_frames * TRAIN_FRACTION)


@dataclass(frozen=True)
class VideoWindow:
    """Frames ``start, start + stride, ...`` (``num_frames`` of them) of a file's frame grid,
    where grid frame ``i`` is at ``i / fps`` seconds."""

    path: Path
    start: int
    stride: int
    num_frames: int

    @property
    def indices(self) -> range:
        return range(self.start, self.start + self.stride * self.num_frames, self.stride)


@dataclass(frozen=True)
class _TrainingFile:
    path: Path
    fps: float
    num_train: int  # grid frames [0, num_train) are training frames

    @property
    def split_time(self) -> float:
        """Seconds; training reads only frames before this."""
        return self.num_train / self.fps


class _FrameCache:
    """Least-recently-used ``{key: frame}`` store bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._frames: OrderedDict[tuple[Path, int], np.ndarray] = OrderedDict()

    def get(self, key: tuple[Path, int]) -> np.ndarray | None:
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
        return frame

    def put(self, key: tuple[Path, int], frame: np.ndarray) -> None:
        if key in self._frames or frame.nbytes > self.max_bytes:
            return
        self._frames[key] = frame
        self.bytes += frame.nbytes
        while self.bytes > self.max_bytes:
            _, old = self._frames.popitem(last=False)
            self.bytes -= old.nbytes


def _downscale_short_side(frames: np.ndarray, short_side: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    if min(h, w) <= short_side:
        return frames
    scale = short_side / min(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize_frames(frames, *size, resample="area")


class VideoFileSource:
    """Random windows of the training part of real video files, randomly cropped and scaled.

    Files that cannot be probed at construction, or fail to decode later, are left out and
    recorded in ``skipped`` (``{path: reason}``). A file named in ``HELD_OUT_FILES`` is refused
    with ValueError.
    """

    name = "video"

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        max_stride: int = 3,  # temporal stride drawn from 1..max_stride (where the file allows)
        max_crop_zoom: float = 2.0,  # the crop is resized to cover the target ×[1, max_crop_zoom]
        cache_short_side: int = 256,  # decoded frames are kept at most this short side
        cache_bytes: int = 384 * 2**20,  # memory bound of the decoded-frame cache
    ) -> None:
        if max_stride < 1 or max_crop_zoom < 1:
            raise ValueError(
                f"max_stride must be >= 1 and max_crop_zoom >= 1, got {max_stride}, {max_crop_zoom}"
            )
        self.max_stride = max_stride
        self.max_crop_zoom = max_crop_zoom
        self.cache_short_side = cache_short_side
        self.skipped: dict[str, str] = {}
        self.files: list[_TrainingFile] = []
        self._cache = _FrameCache(cache_bytes)
        for path in map(Path, paths):
            if path.name in HELD_OUT_FILES:
                raise ValueError(
                    f"{path} is held out for evaluation (HELD_OUT_FILES) and may not be used "
                    "for training"
                )
            try:
                info = probe_video(path)
            except VideoError as e:
                self.skipped[str(path)] = str(e)
                continue
            num_train = held_out_start(info.num_frames)
            if num_train < 1:
                self.skipped[str(path)] = f"{info.num_frames} frames: no training part"
                continue
            self.files.append(_TrainingFile(path, info.fps, num_train))

    @property
    def max_frames(self) -> int:
        return max((f.num_train for f in self.files), default=0)

    def draw_window(self, rng: np.random.Generator, num_frames: int) -> VideoWindow:
        """A random file (of those long enough), stride and start inside its training part."""
        fitting = [f for f in self.files if f.num_train >= num_frames]
        if not fitting:
            raise ClipSourceError(
                f"no usable video file has {num_frames} training frames "
                f"(longest: {self.max_frames}; skipped: {len(self.skipped)})"
            )
        file = fitting[int(rng.integers(len(fitting)))]
        strides = [
            s for s in range(1, self.max_stride + 1) if (num_frames - 1) * s < file.num_train
        ]
        stride = strides[int(rng.integers(len(strides)))]
        start = int(rng.integers(0, file.num_train - (num_frames - 1) * stride))
        return VideoWindow(file.path, start, stride, num_frames)

    def load_window(self, window: VideoWindow) -> np.ndarray:
        """``(T, h, w, 3)`` uint8 frames of ``window`` at cache resolution (short side <= 256).

        Decodes only when some of its frames are not cached, and then only the window (seek,
        stride via the frame rate, ``end`` at the split). Raises VideoError if decoding fails.
        """
        file = next((f for f in self.files if f.path == window.path), None)
        if file is None:
            raise ValueError(f"{window.path} is not one of this source's usable files")
        if window.indices[-1] >= file.num_train:
            raise ValueError(f"{window} reaches past the training part ({file.num_train} frames)")
        cached = [self._cache.get((file.path, i)) for i in window.indices]
        if all(frame is not None for frame in cached):
            return np.stack(cached)  # type: ignore[arg-type]
        indices = window.indices
        start = window.start / file.fps
        fps = file.fps / window.stride
        max_frames = len(indices)
        video = read_video(
            file.path, start=start, end=file.split_time, fps=fps, max_frames=max_frames
        )
        if video.num_frames != len(indices):
            raise VideoError(
                f"cannot read {str(file.path)!r}: decoded {video.num_frames} of the "
                f"{len(indices)} frames from {start:.3f} s at {fps:.3f} fps"
            )
        frames = _downscale_short_side(video.frames, self.cache_short_side)
        for i, frame in zip(indices, frames, strict=True):
            self._cache.put((file.path, i), frame)
        return frames[[indices.index(i) for i in window.indices]]

    def random_crop(
        self, rng: np.random.Generator, frames: np.ndarray, height: int, width: int
    ) -> np.ndarray:
        """Crop a window that, resized to ``height × width``, scales the frames so that they
        cover the target ×[1, max_crop_zoom]; the same window for every frame."""
        h, w = frames.shape[1:3]
        scale = max(height / h, width / w) * _log_uniform(rng, 1.0, self.max_crop_zoom)
        crop_h = min(h, max(1, round(height / scale)))
        crop_w = min(w, max(1, round(width / scale)))
        frames = crop_frames(frames, crop_h, crop_w, mode="random", rng=rng)
        resample = "area" if crop_h >= height else "bicubic"
        return resize_frames(frames, height, width, resample=resample)

    def sample(
        self, rng: np.random.Generator, height: int, width: int, num_frames: int
    ) -> np.ndarray:
        _check_request(height, width, num_frames)
        while True:
            window = self.draw_window(rng, num_frames)  # raises ClipSourceError when none left
            try:
                frames = self.load_window(window)
            except VideoError as e:
                self.skipped[str(window.path)] = str(e)
                self.files = [f for f in self.files if f.path != window.path]
                continue
            return self.random_crop(rng, frames, height, width)


# --------------------------------------------------------------------------------------------
# camera moves over photos
# --------------------------------------------------------------------------------------------


MAX_VIEW_FRACTION = 0.75  # a photo-pan window spans at most this much of the photo: room to move


class PhotoMotion(StrEnum):
    STILL = "still"  # a fixed crop (used for 1-frame clips)
    PAN = "pan"
    ZOOM = "zoom"
    PAN_ZOOM = "pan_zoom"


@dataclass(frozen=True)
class PhotoMove:
    """A crop window moving linearly (centre) and geometrically (scale) over ``T`` frames.

    Coordinates are photo pixels, pixel ``k`` covering ``[k, k + 1)``; ``scale`` is photo pixels
    per output pixel, so the window is ``scale·H × scale·W`` photo pixels.
    """

    photo: str
    motion: PhotoMotion
    center_start: tuple[float, float]  # (y, x)
    center_end: tuple[float, float]
    scale_start: float
    scale_end: float

    def at(self, u: float) -> tuple[float, float, float]:
        """(centre y, centre x, scale) at clip fraction ``u`` in [0, 1]."""
        (y0, x0), (y1, x1) = self.center_start, self.center_end
        scale = self.scale_start * (self.scale_end / self.scale_start) ** u
        return y0 + (y1 - y0) * u, x0 + (x1 - x0) * u, scale


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def _halve(image: np.ndarray) -> np.ndarray:
    """2×2 box average (odd last row/column dropped)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    blocks = image[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).astype(np.float32)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


def _tent_weights(positions: np.ndarray, scale: float, size: int) -> tuple[np.ndarray, int, int]:
    """Resampling weights for samples at ``positions`` (source pixels, pixel k centred at k+0.5)
    with a tent of radius ``max(scale, 1)``: bilinear when upsampling, area-like (antialiased)
    when downsampling. Returns ``(weights (N, K), first, last + 1)`` over source pixels."""
    radius = max(scale, 1.0)
    first = max(0, math.floor(positions.min() - radius - 0.5))
    stop = min(size, math.ceil(positions.max() + radius + 0.5))
    centers = np.arange(first, stop, dtype=np.float64) + 0.5  # (K,)
    weights = np.clip(1.0 - np.abs(centers[None, :] - positions[:, None]) / radius, 0.0, None)
    sums = weights.sum(axis=1, keepdims=True)  # (N, 1); > 0 while positions lie in the image
    return (weights / np.maximum(sums, 1e-12)).astype(np.float32), first, stop


def _fit_path(
    half_start: np.ndarray, half_end: np.ndarray, shift: np.ndarray, extent: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Halve ``shift`` (y, x) until a window of half-size ``half_start`` whose centre moves by
    ``shift`` to a window of half-size ``half_end`` stays inside ``extent``; returns the start
    centre's bounds ``(lo, hi)`` and the shift. Checking both ends suffices: the centre moves
    linearly and the size geometrically, so the margins are concave in time."""
    for _ in range(30):
        lo = np.maximum(half_start, half_end - shift)
        hi = np.minimum(extent - half_start, extent - half_end - shift)
        if np.all(lo <= hi + 1e-9):
            return lo, np.maximum(lo, hi), shift
        shift = shift / 2
    lo = np.maximum(half_start, half_end)  # a window larger than the photo: centre it
    return lo, np.maximum(lo, extent - lo), np.zeros_like(shift)


class PhotoPanSource:
    """Synthetic camera moves (pan, zoom in/out, both) over real photos.

    The window never leaves the photo and never samples it coarser than 1 photo pixel per
    output pixel when the photo is large enough; the view scale is log-uniform between that and
    the whole photo. Frames are resampled from a 2× box pyramid with a tent filter, so large
    views stay antialiased and cheap.
    """

    name = "photo"
    max_frames = None

    def __init__(
        self,
        photos: Mapping[str, np.ndarray],
        *,
        speed: tuple[float, float] = (0.3, 3.0),  # pan speed range, output pixels per frame
        zoom: tuple[float, float] = (1.15, 1.8),  # total zoom ratio range over a clip
    ) -> None:
        self.skipped: dict[str, str] = {}
        self._pyramids: dict[str, list[np.ndarray]] = {}
        for name, photo in photos.items():
            photo = np.asarray(photo)
            if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
                self.skipped[name] = f"not an (H, W, 3) uint8 image: {photo.dtype} {photo.shape}"
                continue
            self._pyramids[name] = [photo]
        if not self._pyramids:
            raise ValueError("PhotoPanSource needs at least one (H, W, 3) uint8 photo")
        self.names = sorted(self._pyramids)
        self.speed = speed
        self.zoom = zoom

    def _level(self, name: str, level: int) -> np.ndarray:
        pyramid = self._pyramids[name]
        while len(pyramid) <= level and min(pyramid[-1].shape[:2]) >= 4:
            pyramid.append(_halve(pyramid[-1]))
        return pyramid[min(level, len(pyramid) - 1)]

    def draw_move(
        self, rng: np.random.Generator, height: int, width: int, num_frames: int
    ) -> PhotoMove:
        name = self.names[int(rng.integers(len(self.names)))]
        photo_h, photo_w = self._pyramids[name][0].shape[:2]
        if num_frames == 1:
            motion = PhotoMotion.STILL
        else:
            motion = [PhotoMotion.PAN, PhotoMotion.ZOOM, PhotoMotion.PAN_ZOOM][int(rng.integers(3))]
        ratio = 1.0
        if motion in (PhotoMotion.ZOOM, PhotoMotion.PAN_ZOOM):
            ratio = _log_uniform(rng, *self.zoom)
        fit = min(photo_h / height, photo_w / width)  # largest scale whose window fits
        ratio = min(ratio, max(fit, 1.0))
        lo = min(1.0, fit / ratio)  # 1 photo pixel per output pixel, if the photo is that large
        hi = max(lo, MAX_VIEW_FRACTION * fit / ratio)
        small = _log_uniform(rng, lo, hi)  # the smaller of the start and end scales
        scales = (small * ratio, small) if rng.random() < 0.5 else (small, small * ratio)
        speed = (
            _log_uniform(rng, *self.speed)
            if motion in (PhotoMotion.PAN, PhotoMotion.PAN_ZOOM)
            else 0
        )
        angle = rng.uniform(0, 2 * math.pi)
        travel = speed * (num_frames - 1) * math.sqrt(scales[0] * scales[1])  # photo pixels
        shift = np.array([math.sin(angle), math.cos(angle)]) * travel
        size = np.array([height, width], np.float64)
        extent = np.array([photo_h, photo_w], np.float64)
        lo, hi, shift = _fit_path(size * scales[0] / 2, size * scales[1] / 2, shift, extent)
        start = rng.uniform(lo, hi)
        end = start + shift
        return PhotoMove(name, motion, (start[0], start[1]), (end[0], end[1]), scales[0], scales[1])

    def render(self, move: PhotoMove, height: int, width: int, num_frames: int) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 frames of ``move``."""
        smallest = min(move.scale_start, move.scale_end)
        level = max(0, math.floor(math.log2(smallest))) if smallest >= 1 else 0
        image = self._level(move.photo, level)
        factor = 2.0**level  # photo pixels per pyramid pixel
        offsets_y = np.arange(height) + 0.5 - height / 2  # (H,) output pixel centres
        offsets_x = np.arange(width) + 0.5 - width / 2  # (W,)
        frames = np.empty((num_frames, height, width, 3), np.uint8)
        # These matmuls are tiny: threaded BLAS only adds wake-ups (100× slower on a busy CPU).
        with _blas_controller().limit(limits=1, user_api="blas"):
            for t in range(num_frames):
                cy, cx, scale = move.at(t / max(num_frames - 1, 1))
                wy, y0, y1 = _tent_weights(
                    (cy + offsets_y * scale) / factor, scale / factor, image.shape[0]
                )  # (H, Ky)
                wx, x0, x1 = _tent_weights(
                    (cx + offsets_x * scale) / factor, scale / factor, image.shape[1]
                )  # (W, Kx)
                region = image[y0:y1, x0:x1].transpose(2, 0, 1)  # (3, Ky, Kx)
                region = np.ascontiguousarray(region, np.float32)  # contiguous: BLAS matmul
                out = wy @ region @ wx.T  # (3, H, W)
                frames[t] = out.round().clip(0, 255).astype(np.uint8).transpose(1, 2, 0)
        return frames

    def sample(
        self, rng: np.random.Generator, height: int, width: int, num_frames: int
    ) -> np.ndarray:
        _check_request(height, width, num_frames)
        return self.render(
            self.draw_move(rng, height, width, num_frames), height, width, num_frames
        )


# --------------------------------------------------------------------------------------------
# assets, the held-out split, and the mixture
# --------------------------------------------------------------------------------------------


def _real_video_files() -> tuple[dict[str, Path], dict[str, str]]:
    """({name: path} of every real clip we can fetch, {asset: reason} of those we cannot)."""
    found: dict[str, Path] = {}
    unavailable: dict[str, str] = {}
    try:
        found.update(imageio_clips())
    except AssetUnavailableError as e:
        unavailable["python3-imageio"] = str(e)
    try:
        found["world.mp4"] = gradio_world_clip()
    except AssetUnavailableError as e:
        unavailable["gradio world.mp4"] = str(e)
    return found, unavailable


def training_video_files() -> tuple[list[Path], dict[str, str]]:
    """(training video paths: every fetchable real clip except ``HELD_OUT_FILES``,
    {asset: reason} of assets that could not be fetched)."""
    found, unavailable = _real_video_files()
    return [p for name, p in found.items() if name not in HELD_OUT_FILES], unavailable


def evaluation_clips(max_short_side: int | None = 256) -> dict[str, np.ndarray]:
    """{file name: (T, H, W, 3) uint8} of held-out real footage: all of ``realshort.mp4`` and
    the frames at or after ``held_out_start`` of every other real clip, downscaled to
    ``max_short_side`` (None: native size). Raises AssetUnavailableError if no clip can be had.
    """
    found, unavailable = _real_video_files()
    if not found:
        raise AssetUnavailableError(f"no real footage available: {unavailable}")
    clips = {}
    for name, path in sorted(found.items()):
        info = probe_video(path)
        first = 0 if name in HELD_OUT_FILES else held_out_start(info.num_frames)
        frames = read_video(path, start=first / info.fps).frames
        if max_short_side is not None:
            frames = _downscale_short_side(frames, max_short_side)
        clips[name] = frames
    return clips


def default_sources() -> tuple[list[ClipSource], dict[str, str]]:
    """(the sources available here: world always, real video and photo pans when their assets
    can be had; {what: reason} for what was left out)."""
    sources: list[ClipSource] = [WorldSource()]
    paths, skipped = training_video_files()
    videos = VideoFileSource(paths)
    if videos.files:
        sources.append(videos)
    else:
        skipped.update(videos.skipped)
        skipped["video"] = "no readable training video"
    found = photos()
    if found:
        sources.append(PhotoPanSource(found))
    else:
        skipped["photo"] = "no photos: scikit-image and scikit-learn are not installed"
    return sources, skipped


class ClipSample(NamedTuple):
    video: torch.Tensor  # (3, T, H, W) float32 in [-1, 1]
    source: str  # ClipSource.name


class MixedClipDataset(torch.utils.data.IterableDataset):
    """Clips of random size, aspect ratio and length from weighted sources.

    ``sample(rng)`` / ``sample_clip(rng)`` draw one clip from a Generator: ``(height, width)``
    uniformly from ``sizes``, a length uniformly from ``lengths``, then a source with probability
    proportional to its weight among the sources that can give that length. Iterating yields
    ``ClipSample``s for indices ``0, 1, 2, ...`` with clip ``i`` drawn from
    ``default_rng([seed, i])``; DataLoader workers and ``rank``/``world_size`` split the indices
    round-robin, so the stream is the same for any number of workers.

    ``sources=None`` uses ``default_sources()`` (fetching assets; what could not be had is in
    ``skipped``). ``weights`` maps ``ClipSource.name`` to a weight; sources with no weight are an
    error, weights with no source are ignored. ``still_fraction`` of the clips longer than one
    frame hold still: one frame of their source repeated, a locked-off shot of a still scene, so
    a decoder learns to keep what does not move from flickering.
    """

    def __init__(
        self,
        sources: Sequence[ClipSource] | None = None,
        *,
        weights: Mapping[str, float] | None = None,
        sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
        lengths: Sequence[int] = DEFAULT_LENGTHS,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        still_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= still_fraction <= 1.0:
            raise ValueError(f"still_fraction must be in [0, 1], got {still_fraction}")
        self._unavailable: dict[str, str] = {}
        if sources is None:
            sources, self._unavailable = default_sources()
        weights = DEFAULT_WEIGHTS if weights is None else weights
        if not sources:
            raise ValueError("MixedClipDataset needs at least one source")
        for source in sources:
            w = weights.get(source.name)
            if w is None or not (math.isfinite(w) and w >= 0):
                raise ValueError(
                    f"source {source.name!r} needs a finite weight >= 0 in weights={dict(weights)}"
                )
        if sum(weights[s.name] for s in sources) <= 0:
            raise ValueError(f"weights {dict(weights)} give every source zero weight")
        for size in sizes:
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"sizes must be positive (height, width) pairs, got {size!r}")
        if not sizes or not lengths or min(lengths) < 1:
            raise ValueError(
                f"sizes and lengths must be non-empty, lengths >= 1: {sizes}, {lengths}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.sources = list(sources)
        self.weights = np.array([weights[s.name] for s in self.sources], np.float64)
        self.sizes = [tuple(map(int, s)) for s in sizes]
        self.lengths = [int(n) for n in lengths]
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.still_fraction = still_fraction

    @property
    def skipped(self) -> dict[str, str]:
        """{what: reason} of every asset, file or photo left out so far (in this process)."""
        out = dict(self._unavailable)
        for source in self.sources:
            out.update({f"{source.name}: {k}": v for k, v in source.skipped.items()})
        return out

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def sample_clip(self, rng: np.random.Generator) -> ClipSample:
        height, width = self.sizes[int(rng.integers(len(self.sizes)))]
        num_frames = self.lengths[int(rng.integers(len(self.lengths)))]
        # drawn only when asked for, so runs without still clips keep their clip stream
        still = self.still_fraction > 0 and num_frames > 1 and rng.random() < self.still_fraction
        weights = self.weights.copy()
        for i, source in enumerate(self.sources):
            if source.max_frames is not None and source.max_frames < num_frames:
                weights[i] = 0.0
        while weights.sum() > 0:
            i = int(rng.choice(len(self.sources), p=weights / weights.sum()))
            try:
                frames = self.sources[i].sample(rng, height, width, 1 if still else num_frames)
            except ClipSourceError:
                weights[i] = 0.0  # e.g. every file of a video source turned out unreadable
                continue
            if still:
                frames = np.repeat(frames, num_frames, axis=0)  # (T, H, W, 3)
            return ClipSample(to_video_tensor(frames)[0], self.sources[i].name)
        raise ClipSourceError(
            f"no source can give a {num_frames}-frame clip "
            f"(sources: {[s.name for s in self.sources]}; skipped: {self.skipped})"
        )

    def sample(self, rng: np.random.Generator) -> torch.Tensor:
        """One clip ``(3, T, H, W)`` float32 in [-1, 1]."""
        return self.sample_clip(rng).video

    def __iter__(self) -> Iterator[ClipSample]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        shard, num_shards = self.rank * workers + worker, self.world_size * workers
        index = shard
        while True:
            yield self.sample_clip(np.random.default_rng([self.seed, index]))
            index += num_shards
