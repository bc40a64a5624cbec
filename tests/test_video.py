"""Tests for kinema.video: round trips through every format, sampling, resize/crop, errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from kinema.assets import AssetUnavailableError, imageio_clips
from kinema.video import (
    Video,
    VideoError,
    VideoInfo,
    crop_frames,
    probe_video,
    read_image,
    read_video,
    resize_and_crop,
    resize_frames,
    write_png_frames,
    write_video,
)

T, H, W, FPS = 33, 64, 64, 8.0
INDEX_STEP = 7  # frame i has an index patch of value 7 * i (T <= 36 keeps it <= 255)


def make_frames(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    """(t, h, w, 3) uint8: a moving colour gradient, a moving square and an index patch."""
    yy, xx = np.mgrid[:h, :w]
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, ..., 0] = (xx * 3 + i * 6) % 256
        frames[i, ..., 1] = (yy * 3 + 40) % 256
        frames[i, ..., 2] = 90 + 60 * np.sin((xx + yy + 3 * i) / 9.0)
        y0, x0 = (4 * i) % (h - 12), (3 * i) % (w - 12)
        frames[i, y0 : y0 + 10, x0 : x0 + 10] = (230, 40, 40)
        frames[i, :12, :12] = INDEX_STEP * i  # top-left patch encodes the frame index
    return frames


def frame_indices(frames: np.ndarray) -> list[int]:
    """Recover the index encoded by make_frames from (possibly lossy) decoded frames."""
    patch = frames[:, 2:10, 2:10].astype(np.float64).mean(axis=(1, 2, 3))
    return [int(v) for v in np.round(patch / INDEX_STEP)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def encode_with_pyav(
    path: Path, frames: np.ndarray, fps: float, codec: str, options: dict[str, str]
) -> Path:
    """Write a test fixture with another codec/container (avi/mpeg4, webm/vp8, mkv/vp9...)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.bit_rate = 4_000_000
        stream.options = options
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


FIXTURE_CODECS = {
    "avi": ("mpeg4", {"qscale": "2"}),
    "webm": ("libvpx", {"deadline": "realtime", "cpu-used": "8", "crf": "4"}),
    "mkv": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "10"}),
}


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return make_frames()


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory, frames: np.ndarray) -> Path:
    return write_video(tmp_path_factory.mktemp("mp4") / "clip.mp4", frames, fps=FPS)


@pytest.fixture(scope="module", params=["mp4", "avi", "webm", "mkv"])
def any_video(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    frames: np.ndarray,
    mp4: Path,
) -> Path:
    if request.param == "mp4":
        return mp4
    codec, options = FIXTURE_CODECS[request.param]
    path = tmp_path_factory.mktemp(request.param) / f"clip.{request.param}"
    return encode_with_pyav(path, frames, FPS, codec, options)


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------


def test_mp4_round_trip(mp4: Path, frames: np.ndarray) -> None:
    video = read_video(mp4)
    assert isinstance(video, Video)
    assert video.frames.shape == (T, H, W, 3) and video.frames.dtype == np.uint8
    assert video.fps == pytest.approx(FPS)
    assert (video.num_frames, video.height, video.width) == (T, H, W)
    assert video.duration == pytest.approx(T / FPS)
    assert psnr(video.frames, frames) > 30
    assert frame_indices(video.frames) == list(range(T))


def test_mp4_is_browser_friendly_h264(mp4: Path) -> None:
    with av.open(str(mp4)) as container:
        cc = container.streams.video[0].codec_context
        assert cc.name == "h264"
        assert cc.pix_fmt == "yuv420p"
        assert cc.profile in ("High", "Main")
    data = mp4.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: index before the media data
    assert [p.name for p in mp4.parent.iterdir()] == ["clip.mp4"]  # no temp files left behind


def test_probe_mp4(mp4: Path) -> None:
    assert probe_video(mp4) == VideoInfo(W, H, T, FPS, T / FPS, "h264")


def test_mp4_odd_size_is_padded_by_edge_replication(tmp_path: Path) -> None:
    frames = make_frames(10, 45, 63)
    path = write_video(tmp_path / "odd.mp4", frames, fps=12.0)
    video = read_video(path)
    assert video.frames.shape == (10, 46, 64, 3)
    assert video.fps == pytest.approx(12.0)
    assert psnr(video.frames[:, :45, :63], frames) > 30
    # the padding row/column repeats the edge
    assert psnr(video.frames[:, 45, :63], frames[:, 44]) > 30
    assert psnr(video.frames[:, :45, 63], frames[:, :, 62]) > 30


def test_write_single_image_and_fractional_fps(tmp_path: Path) -> None:
    image = make_frames(1)[0]
    video = read_video(write_video(tmp_path / "one.mp4", image, fps=29.97))
    assert video.frames.shape == (1, H, W, 3)
    assert video.fps == pytest.approx(29.97, abs=1e-3)


@pytest.mark.parametrize("ext", ["avi", "webm", "mkv"])
def test_other_containers_round_trip(
    ext: str, tmp_path: Path, frames: np.ndarray, mp4: Path
) -> None:
    codec, options = FIXTURE_CODECS[ext]
    path = encode_with_pyav(tmp_path / f"clip.{ext}", frames, FPS, codec, options)
    video = read_video(path)
    assert video.frames.shape == (T, H, W, 3)
    assert video.fps == pytest.approx(FPS)
    assert psnr(video.frames, frames) > 28
    assert frame_indices(video.frames) == list(range(T))
    info = probe_video(path)  # webm/mkv store no frame count: probe counts by decoding
    assert (info.width, info.height, info.num_frames) == (W, H, T)
    assert info.fps == pytest.approx(FPS)


def test_gif_round_trip(tmp_path: Path, frames: np.ndarray) -> None:
    path = write_video(tmp_path / "clip.gif", frames, fps=FPS)
    with Image.open(path) as im:
        assert im.n_frames == T
        assert im.info["loop"] == 0
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    assert set(durations) <= {120, 130}  # 8 fps = 12.5 cs per frame, alternating 12 and 13
    assert sum(durations) == pytest.approx(1000 * T / FPS, abs=10)
    video = read_video(path)
    assert video.frames.shape == (T, H, W, 3)
    assert video.fps == pytest.approx(FPS, rel=0.01)
    assert psnr(video.frames, frames) > 25  # 256-colour palette per frame
    assert frame_indices(video.frames) == list(range(T))
    odd = make_frames(4, 45, 63)
    assert read_video(write_video(tmp_path / "odd.gif", odd, fps=10)).frames.shape == odd.shape


def test_png_frames(tmp_path: Path, frames: np.ndarray) -> None:
    out = write_video(tmp_path / "frames", frames)
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"frame_{i:05d}.png" for i in range(T)]
    for i in (0, 17, T - 1):
        np.testing.assert_array_equal(read_image(out / f"frame_{i:05d}.png"), frames[i])
    # writing a shorter clip into the same folder removes the stale frames
    write_png_frames(out, frames[:5])
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:05d}.png" for i in range(5)]
    # printf pattern and single PNG
    write_video(tmp_path / "pat" / "img_%03d.png", frames[:3])
    assert sorted(p.name for p in (tmp_path / "pat").iterdir()) == [
        "img_000.png",
        "img_001.png",
        "img_002.png",
    ]
    single = write_video(tmp_path / "still.png", frames[7])
    np.testing.assert_array_equal(read_image(single), frames[7])
    still = read_video(single)  # a still image reads as a one-frame video
    assert still.frames.shape == (1, H, W, 3) and still.fps == 1.0
    assert probe_video(single).num_frames == 1


def test_read_jpeg_and_grey_images(tmp_path: Path, frames: np.ndarray) -> None:
    Image.fromarray(frames[3]).save(tmp_path / "a.jpg", quality=95)
    image = read_image(tmp_path / "a.jpg")
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert psnr(image, frames[3]) > 30
    Image.fromarray(np.full((5, 7), 200, np.uint8)).save(tmp_path / "grey.png")
    assert (read_image(tmp_path / "grey.png") == 200).all()
    Image.fromarray(np.full((5, 7), 65535, np.uint16)).save(tmp_path / "grey16.png")
    assert (read_image(tmp_path / "grey16.png") == 255).all()
    assert read_video(tmp_path / "a.jpg", fps=4).fps == 4.0


def test_write_is_atomic_on_error(
    tmp_path: Path, frames: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kinema.video as kv

    path = write_video(tmp_path / "keep.mp4", frames[:4])
    before = path.read_bytes()

    def failing_encoder(tmp: str, *args: object) -> None:
        Path(tmp).write_bytes(b"half-written")
        raise av.FFmpegError(-1, "encoder exploded")

    monkeypatch.setattr(kv, "_write_mp4", failing_encoder)
    with pytest.raises(VideoError, match=r"keep\.mp4"):
        write_video(path, frames)
    assert path.read_bytes() == before
    with pytest.raises(VideoError, match=r"new\.mp4"):
        write_video(tmp_path / "new.mp4", frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_mp4_write_speed(tmp_path: Path) -> None:
    import time

    frames = make_frames(33, 64, 64)
    write_video(tmp_path / "warm.mp4", frames)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        write_video(tmp_path / "speed.mp4", frames)
        times.append(time.perf_counter() - t0)
    assert min(times) < 0.25  # ~6 ms on a laptop core; generous for loaded CI machines


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------


def on_screen_indices(times: np.ndarray, targets: np.ndarray) -> list[int]:
    return [int(np.searchsorted(times, tau, side="right")) - 1 for tau in targets]


@pytest.mark.parametrize(
    ("kwargs", "expected", "fps"),
    [
        ({}, list(range(33)), 8.0),
        ({"start": 1.0, "end": 2.0}, list(range(8, 16)), 8.0),
        ({"stride": 3}, list(range(0, 33, 3)), 8.0 / 3),
        ({"start": 1.0, "stride": 2}, list(range(8, 33, 2)), 4.0),
        ({"max_frames": 5}, [0, 1, 2, 3, 4], 8.0),
        ({"start": 2.5, "max_frames": 3}, [20, 21, 22], 8.0),
        ({"fps": 4}, list(range(0, 33, 2)), 4.0),
        ({"fps": 16}, list(np.repeat(np.arange(33), 2)), 16.0),
        ({"start": 1.0, "end": 2.0, "fps": 4}, [8, 10, 12, 14], 4.0),
        ({"fps": 3}, on_screen_indices(np.arange(33) / 8, np.arange(13) / 3), 3.0),
        ({"end": 100.0}, list(range(33)), 8.0),
    ],
)
def test_sampling(mp4: Path, kwargs: dict, expected: list[int], fps: float) -> None:
    video = read_video(mp4, **kwargs)
    assert frame_indices(video.frames) == expected
    assert video.fps == pytest.approx(fps)


def test_seek_and_range_in_every_container(any_video: Path) -> None:
    assert frame_indices(read_video(any_video, start=1.0, end=2.0).frames) == list(range(8, 16))
    late = read_video(any_video, start=3.0, stride=2)
    assert frame_indices(late.frames) == list(range(24, 33, 2))


def test_start_past_end_is_value_error(mp4: Path) -> None:
    with pytest.raises(ValueError, match="start=10"):
        read_video(mp4, start=10.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 0}, "stride"),
        ({"stride": 1.5}, "stride"),
        ({"fps": -1.0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"start": -1.0}, "start"),
        ({"start": 2.0, "end": 1.0}, "end"),
        ({"max_frames": 0}, "max_frames"),
        ({"stride": 2, "fps": 4.0}, r"stride=2.*fps=4\.0"),
    ],
)
def test_bad_read_args(mp4: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_video(mp4, **kwargs)


# ---------------------------------------------------------------------------------------------
# resize / crop
# ---------------------------------------------------------------------------------------------


def test_resize_shapes_and_antialiasing() -> None:
    frames = make_frames(3, 45, 63)
    assert resize_frames(frames, 32, 48).shape == (3, 32, 48, 3)
    assert resize_frames(frames[0], 90, 126).shape == (90, 126, 3)
    same = resize_frames(frames, 45, 63)
    np.testing.assert_array_equal(same, frames)
    assert same is not frames
    checker = np.zeros((1, 64, 64, 3), np.uint8)
    checker[:, ::2, ::2] = checker[:, 1::2, 1::2] = 255  # 1-pixel checkerboard
    small = resize_frames(checker, 16, 16)
    assert np.abs(small.astype(int) - 128).max() < 8  # antialiased: grey, not aliased b/w


def test_center_crop_is_exact() -> None:
    frames = make_frames(2, 45, 63)
    np.testing.assert_array_equal(crop_frames(frames, 21, 31), frames[:, 12:33, 16:47])
    np.testing.assert_array_equal(crop_frames(frames[0], 45, 63), frames[0])


def test_random_crop_is_reproducible() -> None:
    frames = make_frames(2, 45, 63)
    a = crop_frames(frames, 20, 20, mode="random", rng=np.random.default_rng(3))
    b = crop_frames(frames, 20, 20, mode="random", rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 20, 20, 3) and a.flags.c_contiguous
    crops = {
        crop_frames(frames, 20, 20, mode="random", rng=np.random.default_rng(s)).tobytes()
        for s in range(10)
    }
    assert len(crops) > 1


def test_resize_and_crop() -> None:
    frames = make_frames(2, 45, 90)  # 1:2 aspect
    out = resize_and_crop(frames, 32, 32)
    assert out.shape == (2, 32, 32, 3)
    expected = crop_frames(resize_frames(frames, 32, 64), 32, 32)  # scale by height, then crop
    np.testing.assert_array_equal(out, expected)
    tall = resize_and_crop(frames, 64, 16, mode="random", rng=np.random.default_rng(0))
    assert tall.shape == (2, 64, 16, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda f: resize_frames(f, 0, 10), "height"),
        (lambda f: resize_frames(f, 10, 2.5), "width"),
        (lambda f: resize_frames(f, 10, 10, resample="cubic"), "resample"),
        (lambda f: crop_frames(f, 46, 10), "larger"),
        (lambda f: crop_frames(f, 10, 10, mode="left"), "mode"),
        (lambda f: resize_and_crop(f, -1, 10), "height"),
        (lambda f: crop_frames(f.astype(np.float32), 10, 10), "uint8"),
        (lambda f: crop_frames(f[..., :2], 10, 10), "shape"),
    ],
)
def test_bad_resize_crop_args(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(make_frames(1, 45, 63))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


def corrupt_files(tmp: Path, mp4: Path) -> dict[str, Path]:
    data = mp4.read_bytes()
    files = {
        "random": tmp / "random.mp4",
        "empty": tmp / "empty.mp4",
        "half": tmp / "half.mp4",
        "boundary": tmp / "boundary.mp4",  # cut between two packets: FFmpeg would not notice
        "header": tmp / "header.mp4",
        "png": tmp / "broken.png",
        "missing": tmp / "missing.mp4",
        "folder": tmp,
    }
    files["random"].write_bytes(np.random.default_rng(0).bytes(5000))
    files["empty"].write_bytes(b"")
    files["half"].write_bytes(data[: len(data) // 2])
    with av.open(str(mp4)) as container:
        positions = [p.pos for p in container.demux(video=0) if p.size]
    files["boundary"].write_bytes(data[: positions[-3]])
    files["header"].write_bytes(data[:100])
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    return files


@pytest.mark.parametrize(
    "kind", ["random", "empty", "half", "boundary", "header", "png", "missing", "folder"]
)
def test_unreadable_files_raise_video_error(tmp_path: Path, mp4: Path, kind: str) -> None:
    path = corrupt_files(tmp_path, mp4)[kind]
    for fn in (read_video, probe_video):
        with pytest.raises(VideoError) as info:
            fn(path)
        assert str(path) in str(info.value)
    if kind == "png":
        with pytest.raises(VideoError, match=r"broken\.png"):
            read_image(path)


def test_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "audio.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoError, match="no video stream"):
        read_video(path)


@pytest.mark.parametrize(
    ("name", "frames", "kwargs", "match"),
    [
        ("a.mov", make_frames(2), {}, r"\.mp4.*\.gif"),
        ("a.mp4", make_frames(2).astype(np.float32) / 255, {}, "uint8"),
        ("a.mp4", np.zeros((2, 8, 8), np.uint8), {}, "shape"),
        ("a.mp4", np.zeros((2, 8, 8, 4), np.uint8), {}, "shape"),
        ("a.mp4", np.zeros((0, 8, 8, 3), np.uint8), {}, "non-empty"),
        ("a.mp4", make_frames(2), {"crf": 60}, "crf"),
        ("a.mp4", make_frames(2), {"fps": 0}, "fps"),
        ("a.png", make_frames(2), {}, "pattern"),
    ],
)
def test_bad_write_args(
    tmp_path: Path, name: str, frames: np.ndarray, kwargs: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        write_video(tmp_path / name, frames, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_the_same_frames_make_the_same_mp4_every_time(tmp_path: Path) -> None:
    """x264's AVX-512 code coded clips like this differently in about one write in six; capped
    at AVX2 (where the CPU has AVX-512) every write is the same."""
    rng = np.random.default_rng(0)
    walk = np.kron(rng.normal(size=(T, 8, 8, 3)).cumsum(0), np.ones((1, 8, 8, 1)))
    levels = (walk - walk.min()) / (walk.max() - walk.min()) * 255 + rng.integers(-6, 7, walk.shape)
    frames = np.clip(levels, 0, 255).astype(np.uint8)  # noisy 8x8 blocks drifting in colour
    streams = set()
    for _ in range(12):
        write_video(tmp_path / "a.mp4", frames, fps=FPS)
        with av.open(str(tmp_path / "a.mp4")) as container:
            streams.add(b"".join(bytes(packet) for packet in container.demux(video=0)))
    assert len(streams) == 1


def test_video_dataclass_validates() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Video(np.zeros((2, 4, 4, 3), np.float32), 8.0)
    with pytest.raises(ValueError, match="fps"):
        Video(np.zeros((2, 4, 4, 3), np.uint8), 0.0)


# ---------------------------------------------------------------------------------------------
# real footage (optional)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_clips() -> dict[str, Path]:
    """Real footage from Debian's python3-imageio, fetched into the cache (skips if offline)."""
    try:
        return imageio_clips()
    except AssetUnavailableError as e:
        pytest.skip(f"real footage unavailable: {e}")


def test_real_footage_reads_and_round_trips(real_clips: dict[str, Path], tmp_path: Path) -> None:
    for name, clip in real_clips.items():
        info = probe_video(clip)
        video = read_video(clip, max_frames=16)
        assert video.frames.shape[1:] == (info.height, info.width, 3), name
        assert 1 <= video.num_frames <= 16
        small = resize_and_crop(video.frames, 64, 64)
        back = read_video(write_video(tmp_path / f"{clip.stem}.mp4", small, fps=video.fps))
        assert back.frames.shape == small.shape
        assert psnr(back.frames, small) > 20  # detailed colour at 64x64 is capped by 4:2:0


def test_real_footage_metadata(real_clips: dict[str, Path]) -> None:
    cockatoo = probe_video(real_clips["cockatoo.mp4"])
    assert (cockatoo.width, cockatoo.height) == (1280, 720)
    assert cockatoo.num_frames == 280
    short = read_video(real_clips["realshort.mp4"])
    assert short.frames.shape == (36, 240, 320, 3)
    # Sampling by target fps halves the frame count of a clip when asked for half its rate.
    half = read_video(real_clips["realshort.mp4"], fps=short.fps / 2)
    assert half.num_frames == 18


def test_seek_into_real_footage_matches_sequential_decode(real_clips: dict[str, Path]) -> None:
    # cockatoo.mp4 is an old x264 4:4:4 stream whose quirks FFmpeg detects from its first packet;
    # a cold seek once decoded it with wrong colors.
    path = real_clips["cockatoo.mp4"]
    fps = probe_video(path).fps
    sequential = read_video(path, max_frames=170).frames
    seeked = read_video(path, start=165 / fps, max_frames=1).frames[0]
    assert np.array_equal(seeked, sequential[165])
