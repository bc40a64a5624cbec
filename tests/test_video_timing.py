"""Frame timing and orientation: variable frame rates, rotated streams, repeated GIF frames."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from kinema.serve.pipeline_generator import read_video_at_size
from kinema.video import probe_video, read_video, resize_and_crop, write_video


def shades(n: int, h: int = 8, w: int = 8) -> np.ndarray:
    """(n, h, w, 3) frames of grey levels 0, 40, 80, ... (frame i has level 40 * i)."""
    return np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 40, h * w * 3).reshape(
        n, h, w, 3
    )


def levels(frames: np.ndarray) -> list[int]:
    return [round(float(f.mean()) / 40) for f in frames]


def write_timed_mp4(path: Path, frames: np.ndarray, pts_ms: list[int]) -> Path:
    """An H.264 mp4 whose frame i starts at ``pts_ms[i]`` milliseconds (variable frame rate)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for frame, pts in zip(frames, pts_ms, strict=True):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = pts, Fraction(1, 1000)
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def gap_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # frames at 0, 0.5, 2.0, 2.25 s: frame 1 is held 1.5 s; the last lasts 0.1 s (rate 10)
    path = tmp_path_factory.mktemp("vfr") / "gap.mp4"
    return write_timed_mp4(path, shades(4), [0, 500, 2000, 2250])


def test_variable_rate_shows_the_frame_on_screen(gap_mp4: Path) -> None:
    video = read_video(gap_mp4, fps=4)
    # output time k / 4 shows the last frame starting at or before it; frame 3 lasts 0.25 s
    assert levels(video.frames) == [0, 0, 1, 1, 1, 1, 1, 1, 2, 3]


def test_variable_rate_with_a_start_mid_frame(gap_mp4: Path) -> None:
    # at 1.0 s frame 1 (from 0.5 s) is on screen, though it starts before `start`
    assert levels(read_video(gap_mp4, start=1.0, end=2.5, fps=4).frames) == [1, 1, 1, 1, 2, 3]


def test_gif_with_a_held_frame_reads_back_at_its_rate(tmp_path: Path) -> None:
    # 10 identical frames, then 5 distinct: Pillow stores the 10 as one 1.25 s frame
    frames = np.concatenate([np.zeros((9, 8, 8, 3), np.uint8), shades(6)])
    video = read_video(write_video(tmp_path / "held.gif", frames, fps=8), fps=8)
    assert levels(video.frames) == levels(frames) == [0] * 10 + [1, 2, 3, 4, 5]


def test_constant_rate_gif_reads_back_exactly(tmp_path: Path) -> None:
    # GIF delays are whole centiseconds: at 8 fps, frame 3 starts at 0.38 s, not 0.375 s
    frames = shades(6)
    assert levels(read_video(write_video(tmp_path / "c.gif", frames, fps=8), fps=8).frames) == (
        list(range(6))
    )


def test_studio_reads_the_same_frames_as_read_video(gap_mp4: Path) -> None:
    studio = read_video_at_size(gap_mp4, 4, 4, fps=8)
    whole = resize_and_crop(read_video(gap_mp4, fps=8).frames, 4, 4)
    assert studio.shape == whole.shape == (19, 4, 4, 3)  # 8 fps until 2.35 s
    np.testing.assert_array_equal(studio, whole)


@pytest.mark.parametrize(
    ("degrees", "top_left", "bottom_right", "shape"),
    [
        (-90, "red", "blue", (32, 16)),  # turned clockwise: the left (red) half goes on top
        (90, "blue", "red", (32, 16)),
        (180, "blue", "red", (16, 32)),
    ],
)
def test_rotated_stream_is_read_upright(
    tmp_path: Path, degrees: int, top_left: str, bottom_right: str, shape: tuple[int, int]
) -> None:
    frame = np.zeros((16, 32, 3), np.uint8)
    frame[:, :16, 0] = frame[:, 16:, 2] = 255  # left half red, right half blue
    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "yuv420p"
        if not hasattr(stream, "set_display_rotation"):
            pytest.skip("this PyAV cannot write a display matrix (set_display_rotation)")
        stream.set_display_rotation(degrees)  # counter-clockwise degrees, as players read them
        for i in range(2):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode(None))

    video = read_video(path)
    info = probe_video(path)
    assert video.frames.shape == (2, *shape, 3)
    assert (info.height, info.width) == shape
    color = {"red": 0, "blue": 2}
    assert video.frames[0, 0, 0].argmax() == color[top_left]
    assert video.frames[0, -1, -1].argmax() == color[bottom_right]
