"""Edge cases of user input: frame counts named at the output's rate, studio sizes that cannot keep
their aspect, and non-ASCII words in world prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinema.language.world_parse import parse_world_prompt
from kinema.modes import Mode, ModeInputs, WindowGeometry, build_mode_spec
from kinema.pipeline import Pipeline
from kinema.serve.limits import LimitError, StudioLimits
from kinema.serve.studio import ASPECTS, size_for_aspect
from kinema.video import write_video
from test_serve import TinyTextEncoder, save_tiny_model

GEOMETRY = WindowGeometry(4, max_window_latents=9, window_latents=9, context_latents=2)


def test_short_context_names_the_rate_and_the_flag():
    video = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(
        ValueError, match=r"the video has 4 frames at 8 fps \(the video resampled .*--context-lat"
    ):
        build_mode_spec(Mode.EXTEND_FORWARD, ModeInputs(video=video, fps=8.0), 9, GEOMETRY)
    with pytest.raises(ValueError, match=r"video2 has 4 frames at 12.5 fps.*context_latents"):
        inputs = ModeInputs(video=np.zeros((9, 8, 8, 3), np.uint8), video2=video, fps=12.5)
        build_mode_spec(Mode.CONNECT, inputs, 8, GEOMETRY)


def test_pipeline_counts_a_short_video_at_the_output_fps(tmp_path: Path):
    pipe = Pipeline.from_pretrained(save_tiny_model(tmp_path / "m"), text_encoder=TinyTextEncoder())
    short = tmp_path / "short30.mp4"
    write_video(short, np.zeros((12, 32, 32, 3), np.uint8), fps=30)  # 0.4 s: 3 or 4 frames at 8
    with pytest.raises(ValueError, match=r"has \d frames at 8 fps.*--context-latents"):
        pipe("a ball", mode="extend-forward", video=short, num_frames=4)


def test_size_for_aspect_keeps_the_aspect_or_names_the_smallest_size():
    limits = StudioLimits()  # 32..256 px, multiples of 16
    for aspect, (aw, ah) in ASPECTS.items():
        for size in range(32, 257, 16):
            try:
                width, height = size_for_aspect(aspect, size, limits)
            except LimitError as e:
                assert f"size {size} is too small for aspect {aspect}" in str(e)
                continue
            assert (width > height, width < height) == (aw > ah, aw < ah)  # never square by force
    with pytest.raises(LimitError, match=r"16 pixels, below the 32-pixel minimum.* 16:9 is 48$"):
        size_for_aspect("16:9", 32, limits)
    with pytest.raises(LimitError, match=r"32 pixels, a square once rounded.* 3:4 is 48$"):
        size_for_aspect("3:4", 32, limits)
    assert size_for_aspect("16:9", 48, limits) == (48, 32)
    tight = StudioLimits(min_size=48, max_size=64)
    with pytest.raises(LimitError, match=r"is above the largest size, 64$"):
        size_for_aspect("16:9", 64, tight)


def test_world_prompt_reports_non_ascii_words_whole():
    parsed = parse_world_prompt("a café ball bounces ünïcödé 🎈, naïve_word")
    assert parsed.unknown_words == ["café", "ünïcödé", "naïve", "word"]
    assert parse_world_prompt("a red ball🎈bounces").unknown_words == []  # emoji split words
