"""Tests for kinema.compression.data: every clip source, the mixture, determinism, the held-out
split and skipping of unreadable files. Real assets are used when they can be fetched (else the
test skips); the rest runs on tiny synthetic videos and photos."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from kinema.assets import AssetUnavailableError, gradio_world_clip, imageio_clips, photos
from kinema.compression import data
from kinema.compression.data import (
    HELD_OUT_FILES,
    ClipSample,
    ClipSourceError,
    MixedClipDataset,
    PhotoMotion,
    PhotoMove,
    PhotoPanSource,
    VideoFileSource,
    WorldSource,
    evaluation_clips,
    held_out_start,
    training_video_files,
)
from kinema.video import probe_video, read_video, write_video

slow = pytest.mark.skipif(not os.environ.get("KINEMA_SLOW"), reason="set KINEMA_SLOW=1")

INDEX_FRAMES, INDEX_STEP = 40, 6  # frame i of the index video is flat grey 6 * i
INDEX_TRAIN = held_out_start(INDEX_FRAMES)  # 32: frames 32..39 are held out


@pytest.fixture(scope="module")
def index_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = np.repeat(np.arange(INDEX_FRAMES, dtype=np.uint8) * INDEX_STEP, 48 * 64 * 3)
    path = tmp_path_factory.mktemp("videos") / "index.mp4"
    return write_video(path, frames.reshape(INDEX_FRAMES, 48, 64, 3), fps=8.0)


def frame_indices(clip: np.ndarray) -> np.ndarray:
    """Index of each frame of a clip cut from `index_video` (its mean grey / INDEX_STEP)."""
    return np.round(clip.reshape(len(clip), -1).mean(axis=1) / INDEX_STEP).astype(int)


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    """A (300, 400, 3) uint8 photo stand-in: smooth random texture, no periodicity."""
    noise = np.random.default_rng(0).normal(size=(300, 400, 3))
    smooth = gaussian_filter(noise, sigma=(2.0, 2.0, 0))
    return np.clip(128 + 60 * smooth / smooth.std(), 0, 255).astype(np.uint8)


def check_clip(clip: np.ndarray, num_frames: int, height: int, width: int) -> None:
    assert clip.shape == (num_frames, height, width, 3)
    assert clip.dtype == np.uint8
    assert clip.std() > 1.0  # not a flat frame


# --- world ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_frames", "height", "width"), [(1, 32, 48), (9, 48, 32)])
def test_world_source_shapes_and_determinism(num_frames: int, height: int, width: int) -> None:
    source = WorldSource()
    clip = source.sample(np.random.default_rng(3), height, width, num_frames)
    check_clip(clip, num_frames, height, width)
    again = source.sample(np.random.default_rng(3), height, width, num_frames)
    np.testing.assert_array_equal(clip, again)


def test_world_clips_move() -> None:
    rng = np.random.default_rng(0)
    moving = [
        np.abs(c[0].astype(int) - c[-1]).mean() > 0.5
        for c in (WorldSource().sample(rng, 32, 32, 9) for _ in range(4))
    ]
    assert sum(moving) >= 3


# --- photo pans ----------------------------------------------------------------------------


@pytest.mark.parametrize(("num_frames", "height", "width"), [(1, 32, 32), (9, 32, 48)])
def test_photo_pan_source_shapes(texture: np.ndarray, num_frames, height, width) -> None:
    source = PhotoPanSource({"texture": texture})
    clip = source.sample(np.random.default_rng(1), height, width, num_frames)
    check_clip(clip, num_frames, height, width)
    again = source.sample(np.random.default_rng(1), height, width, num_frames)
    np.testing.assert_array_equal(clip, again)


def test_integer_pan_is_an_exact_shift(texture: np.ndarray) -> None:
    """At 1 photo pixel per output pixel and 2 px per frame, frame t+1 is frame t moved by 2."""
    source = PhotoPanSource({"texture": texture})
    move = PhotoMove("texture", PhotoMotion.PAN, (100.0, 100.0), (100.0, 116.0), 1.0, 1.0)
    clip = source.render(move, 32, 32, 9).astype(int)
    for t in range(8):
        np.testing.assert_array_equal(clip[t + 1, :, :-2], clip[t, :, 2:])
    assert np.abs(clip[0] - clip[-1]).mean() > 10


def phase_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(dy, dx) such that b ≈ a shifted by (dy, dx), by phase correlation of the grey images."""
    fa, fb = (np.fft.fft2(x.astype(float).mean(axis=-1) - x.mean()) for x in (a, b))
    cross = fb * np.conj(fa)
    corr = np.fft.ifft2(cross / (np.abs(cross) + 1e-9)).real
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape))
    size = np.array(corr.shape)
    return np.where(peak > size // 2, peak - size, peak)


def test_random_pans_are_shifts(texture: np.ndarray) -> None:
    source = PhotoPanSource({"texture": texture})
    rng = np.random.default_rng(7)
    checked = 0
    while checked < 3:
        move = source.draw_move(rng, 48, 48, 9)
        if move.motion is not PhotoMotion.PAN:
            continue
        clip = source.render(move, 48, 48, 9)
        step = (np.array(move.center_end) - move.center_start) / 8 / move.scale_start
        for t in (0, 4, 7):
            # content moves opposite to the window: frame t+1 is frame t shifted by -step
            assert np.abs(phase_shift(clip[t], clip[t + 1]) + step).max() <= 1.0
        assert np.abs(clip[0].astype(int) - clip[-1]).mean() > 2
        checked += 1


def test_photo_windows_stay_inside_and_zoom(texture: np.ndarray) -> None:
    source = PhotoPanSource({"texture": texture})
    rng = np.random.default_rng(2)
    zooms = 0
    for _ in range(100):
        height, width, num_frames = 32, 48, 17
        move = source.draw_move(rng, height, width, num_frames)
        for u in (0.0, 0.5, 1.0):
            cy, cx, scale = move.at(u)
            assert scale >= 1.0 - 1e-9  # never upsampled: the texture is large enough
            assert cy - scale * height / 2 >= -1e-6 and cy + scale * height / 2 <= 300 + 1e-6
            assert cx - scale * width / 2 >= -1e-6 and cx + scale * width / 2 <= 400 + 1e-6
        if move.motion in (PhotoMotion.ZOOM, PhotoMotion.PAN_ZOOM):
            assert not np.isclose(move.scale_start, move.scale_end)
            zooms += 1
    assert zooms > 30


# --- video files ---------------------------------------------------------------------------


@pytest.mark.parametrize(("num_frames", "height", "width"), [(1, 32, 32), (9, 24, 40)])
def test_video_source_shapes(index_video: Path, num_frames, height, width) -> None:
    source = VideoFileSource([index_video])
    clip = source.sample(np.random.default_rng(0), height, width, num_frames)
    assert clip.shape == (num_frames, height, width, 3) and clip.dtype == np.uint8
    again = VideoFileSource([index_video]).sample(
        np.random.default_rng(0), height, width, num_frames
    )
    np.testing.assert_array_equal(clip, again)  # fresh cache, same clip


def test_video_source_stays_in_training_part(index_video: Path) -> None:
    source = VideoFileSource([index_video])
    assert source.max_frames == INDEX_TRAIN
    rng = np.random.default_rng(0)
    last_frames = set()
    for _ in range(300):
        window = source.draw_window(rng, 9)
        assert window.indices[-1] < INDEX_TRAIN
        last_frames.add(window.indices[-1])
    assert INDEX_TRAIN - 1 in last_frames  # the whole training part is reachable
    strides = set()
    for _ in range(12):
        indices = frame_indices(source.sample(rng, 24, 24, 9))
        assert indices.max() < INDEX_TRAIN  # no held-out frame ever decoded into a clip
        steps = set(np.diff(indices).tolist())
        assert len(steps) == 1 and steps <= {1, 2, 3}
        strides |= steps
    assert len(strides) >= 2
    with pytest.raises(ClipSourceError):
        source.sample(rng, 24, 24, INDEX_TRAIN + 1)


def test_evaluation_clips_are_the_complement(
    index_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluation_clips() returns exactly the frames training never reads."""
    short = tmp_path / "realshort.mp4"
    short.write_bytes(index_video.read_bytes())
    monkeypatch.setattr(
        data, "_real_video_files", lambda: ({"index.mp4": index_video, short.name: short}, {})
    )
    clips = evaluation_clips()
    assert frame_indices(clips["index.mp4"]).tolist() == list(range(INDEX_TRAIN, INDEX_FRAMES))
    assert frame_indices(clips["realshort.mp4"]).tolist() == list(range(INDEX_FRAMES))
    assert training_video_files()[0] == [index_video]


def test_held_out_file_is_refused(tmp_path: Path) -> None:
    assert "realshort.mp4" in HELD_OUT_FILES
    with pytest.raises(ValueError, match="held out"):
        VideoFileSource([tmp_path / "realshort.mp4"])


def test_unreadable_files_are_skipped_and_counted(index_video: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    source = VideoFileSource([corrupt, index_video, empty, tmp_path / "missing.mp4"])
    assert [f.path for f in source.files] == [index_video]
    assert set(source.skipped) == {str(corrupt), str(empty), str(tmp_path / "missing.mp4")}
    assert source.sample(np.random.default_rng(0), 16, 16, 5).shape == (5, 16, 16, 3)


def test_file_failing_later_is_dropped(index_video: Path, tmp_path: Path) -> None:
    """A file that disappears (or breaks) after probing is dropped when it fails to decode;
    once no file is left, the mixture falls back to its other sources."""
    doomed = tmp_path / "doomed.mp4"
    doomed.write_bytes(index_video.read_bytes())
    videos = VideoFileSource([doomed])
    doomed.unlink()
    data = MixedClipDataset(
        [videos, WorldSource()],
        weights={"video": 1.0, "world": 1e-9},
        sizes=[(16, 16)],
        lengths=[5],
    )
    sample = data.sample_clip(np.random.default_rng(0))
    assert sample.source == "world"
    assert videos.files == [] and str(doomed) in videos.skipped
    assert data.num_skipped == 1 and "video: " + str(doomed) in data.skipped


# --- the mixture ---------------------------------------------------------------------------


@pytest.fixture()
def small_mixture(index_video: Path, texture: np.ndarray):
    def build(seed: int = 0, **kwargs) -> MixedClipDataset:
        sources = [WorldSource(), VideoFileSource([index_video]), PhotoPanSource({"t": texture})]
        return MixedClipDataset(
            sources,
            weights={"world": 0.4, "video": 0.3, "photo": 0.3},
            sizes=[(16, 16), (16, 24), (24, 16)],
            lengths=[1, 5, 9],
            seed=seed,
            **kwargs,
        )

    return build


def take(iterable, n: int) -> list[ClipSample]:
    return [sample for sample, _ in zip(iterable, range(n), strict=False)]


def test_mixture_outputs(small_mixture) -> None:
    samples = take(small_mixture(), 24)
    for s in samples:
        assert isinstance(s.video, torch.Tensor) and s.video.dtype == torch.float32
        c, t, h, w = s.video.shape
        assert c == 3 and t in (1, 5, 9) and (h, w) in [(16, 16), (16, 24), (24, 16)]
        assert s.video.min() >= -1.0 and s.video.max() <= 1.0
    assert {s.source for s in samples} == {"world", "video", "photo"}
    assert len({tuple(s.video.shape) for s in samples}) > 3
    clip = small_mixture().sample(np.random.default_rng(0))
    assert clip.ndim == 4 and clip.shape[0] == 3


def test_mixture_is_deterministic(small_mixture) -> None:
    a, b = take(small_mixture(seed=5), 8), take(small_mixture(seed=5), 8)
    for x, y in zip(a, b, strict=True):
        assert x.source == y.source and torch.equal(x.video, y.video)
    c = take(small_mixture(seed=6), 8)
    assert any(
        x.video.shape != z.video.shape or not torch.equal(x.video, z.video)
        for x, z in zip(a, c, strict=True)
    )
    # ranks split the stream round-robin: interleaving them gives the single-process stream
    ranks = [take(small_mixture(seed=5, rank=r, world_size=2), 4) for r in (0, 1)]
    interleaved = [s for pair in zip(*ranks, strict=True) for s in pair]
    for x, y in zip(a, interleaved, strict=True):
        assert torch.equal(x.video, y.video)


def test_still_fraction_makes_still_clips_of_every_source(small_mixture) -> None:
    def is_still(s: ClipSample) -> bool:
        return bool((s.video[:, 1:] == s.video[:, :1]).all())

    def still_share(samples: list[ClipSample]) -> float:
        long = [s for s in samples if s.video.shape[1] > 1]
        return sum(map(is_still, long)) / len(long)

    plain = still_share(take(small_mixture(seed=3), 96))  # a still world scene now and then
    samples = take(small_mixture(seed=3, still_fraction=0.5), 96)
    assert plain < 0.2 and 0.4 < still_share(samples) < 0.8
    still = [s for s in samples if s.video.shape[1] > 1 and is_still(s)]
    assert {s.source for s in still} == {"world", "video", "photo"}
    assert {s.video.shape[1] for s in still} == {5, 9}  # still clips keep the drawn length
    every = take(small_mixture(seed=3, still_fraction=1.0), 24)
    assert all(is_still(s) for s in every if s.video.shape[1] > 1)
    with pytest.raises(ValueError, match=r"still_fraction must be in \[0, 1\], got 1.5"):
        small_mixture(still_fraction=1.5)


def test_mixture_rejects_bad_configuration(texture: np.ndarray) -> None:
    with pytest.raises(ValueError, match="photo"):
        MixedClipDataset([PhotoPanSource({"t": texture})], weights={"world": 1.0})
    with pytest.raises(ValueError, match="zero weight"):
        MixedClipDataset([WorldSource()], weights={"world": 0.0})
    with pytest.raises(ValueError, match="sizes"):
        MixedClipDataset([WorldSource()], sizes=[(0, 16)])


# --- real assets (skip when they cannot be fetched) ----------------------------------------


def real_or_skip(fetch):
    try:
        return fetch()
    except AssetUnavailableError as e:
        pytest.skip(f"asset unavailable: {e}")


def test_gradio_world_clip() -> None:
    info = probe_video(real_or_skip(gradio_world_clip))
    assert (info.width, info.height, info.num_frames) == (480, 270, 901)


def test_gradio_fetch_failure_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KINEMA_CACHE", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(AssetUnavailableError):
        gradio_world_clip()
    assert not list(tmp_path.rglob("*.mp4*"))  # nothing half-written left behind


def test_bundled_photos() -> None:
    if not all(importlib.util.find_spec(p) for p in ("skimage", "sklearn")):
        pytest.skip("scikit-image or scikit-learn is not installed")
    found = photos()
    assert {"astronaut", "coffee", "chelsea", "rocket", "china", "flower"} <= set(found)
    for image in found.values():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert min(image.shape[:2]) >= 256
    clip = PhotoPanSource(found).sample(np.random.default_rng(0), 64, 96, 9)
    check_clip(clip, 9, 64, 96)


def test_real_training_videos_exclude_held_out() -> None:
    paths, _ = training_video_files()
    if not paths:
        pytest.skip("no real footage could be fetched")
    assert not {p.name for p in paths} & HELD_OUT_FILES
    world = [p for p in paths if p.name == "world.mp4"]
    if not world:
        pytest.skip("gradio world.mp4 unavailable")
    source = VideoFileSource(world)
    assert source.files[0].num_train == held_out_start(901) == 720
    clip = source.sample(np.random.default_rng(0), 64, 96, 9)
    check_clip(clip, 9, 64, 96)


def test_default_mixture_uses_only_training_footage() -> None:
    mixture = MixedClipDataset(sizes=[(32, 32)], lengths=[1, 5])
    names = {s.name for s in mixture.sources}
    assert "world" in names
    for source in mixture.sources:
        if isinstance(source, VideoFileSource):
            assert source.files and not {f.path.name for f in source.files} & HELD_OUT_FILES
    sample = mixture.sample_clip(np.random.default_rng(0))
    assert sample.source in names and sample.video.shape[:2] in [(3, 1), (3, 5)]


@slow
def test_cockatoo_windows_match_sequential_decoding() -> None:
    """Windows decoded with a seek equal the same frames decoded from the start (cockatoo.mp4
    is an old x264 4:4:4 stream that once decoded wrongly after a seek)."""
    path = real_or_skip(imageio_clips)["cockatoo.mp4"]
    source = VideoFileSource([path], cache_short_side=720)
    window = source.draw_window(np.random.default_rng(1), 5)
    frames = source.load_window(window)
    reference = read_video(path, end=11.2).frames[list(window.indices)]
    assert np.abs(frames.astype(int) - reference).mean() < 1.0


@slow
def test_evaluation_clips_are_the_held_out_part() -> None:
    clips = real_or_skip(lambda: evaluation_clips(max_short_side=None))
    assert clips["realshort.mp4"].shape[0] == 36
    if "cockatoo.mp4" in clips:
        tail = read_video(real_or_skip(imageio_clips)["cockatoo.mp4"]).frames[224:]
        assert clips["cockatoo.mp4"].shape == tail.shape
        assert np.abs(clips["cockatoo.mp4"].astype(int) - tail).mean() < 1.0
    if "world.mp4" in clips:
        assert clips["world.mp4"].shape[0] == 901 - 720
