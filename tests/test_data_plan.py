"""The data layer's pure parts: sizes, lengths, condition masks, the config and step plans."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinema.data import (
    ConditionKind,
    DataConfig,
    LatentGeometry,
    Planner,
    TextChoice,
    choose_frames,
    choose_size,
    crop_box,
    sample_condition,
)
from kinema.data.plan import ClipMeta

GEOMETRY = LatentGeometry(space_compression=4, time_compression=4, patch=(1, 2, 2))


# --- sizes and lengths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "budget", "multiple", "expected"),
    [
        ((64, 64), 64 * 64, 8, (64, 64)),
        ((96, 64), 64 * 64, 8, (72, 48)),  # 3:2 kept exactly
        ((1280, 720), 64 * 64, 8, (80, 48)),  # 16:9 -> 5:3, the closest within 4,096 pixels
        ((720, 1280), 64 * 64, 8, (48, 80)),
        ((40, 24), 64 * 64, 8, (40, 24)),  # small source: never upscaled
        ((4, 4), 64 * 64, 8, (8, 8)),  # tiny source: raised to the minimum
        ((1000, 10), 64 * 64, 16, (256, 16)),  # extreme: one side at the minimum, budget kept
    ],
)
def test_choose_size(src, budget, multiple, expected):
    w, h = choose_size(*src, budget, multiple)
    assert (w, h) == expected
    assert w % multiple == 0 and h % multiple == 0 and w * h <= budget


def test_choose_size_keeps_aspect_ratio_over_many_sources():
    rng = np.random.default_rng(0)
    for _ in range(300):
        src_w, src_h = (int(v) for v in rng.integers(64, 2000, size=2))
        if max(src_w, src_h) > 4 * min(src_w, src_h):
            continue
        w, h = choose_size(src_w, src_h, 128 * 128, 16)
        assert w % 16 == 0 and h % 16 == 0 and w * h <= 128 * 128
        assert w <= src_w and h <= src_h  # never upscaled
        # within one multiple of the exact aspect ratio on the short side
        assert abs(math.log(w / h / (src_w / src_h))) <= math.log(1 + 16 / min(w, h)) + 1e-9


def test_choose_size_rejects_bad_values():
    with pytest.raises(ValueError, match="pixel_budget=32 is below the smallest frame 8x8"):
        choose_size(64, 64, 32, 8)
    with pytest.raises(ValueError, match="src_w must be a positive int"):
        choose_size(0, 64, 4096, 8)


def test_crop_box_matches_target_aspect():
    assert crop_box(1280, 720, 80, 48, 0.0, 0.0) == (0, 0, 1200, 720)
    left, top, w, h = crop_box(1280, 720, 80, 48, 0.999, 0.5)
    assert (left + w, top, h) == (1280, 0, 720)
    assert crop_box(64, 96, 64, 64) == (0, 16, 64, 64)  # centred


@pytest.mark.parametrize(
    ("available", "max_frames", "tc", "multiple", "expected"),
    [(9, 33, 4, 1, 9), (12, 33, 4, 1, 9), (100, 33, 4, 1, 33), (1, 33, 4, 1, 1), (3, 33, 4, 1, 1),
     (9, 33, 4, 2, 5), (100, 17, 8, 1, 17), (100, 16, 8, 1, 9)],
)  # fmt: skip
def test_choose_frames(available, max_frames, tc, multiple, expected):
    assert choose_frames(available, max_frames, tc, multiple) == expected


def test_choose_frames_too_short_for_time_patch():
    with pytest.raises(ValueError, match=r"too short.*at least 5 frames"):
        choose_frames(3, 33, 4, latent_multiple=2)


# --- condition masks ---------------------------------------------------------------------------


def masks(kind: ConditionKind, t: int, n: int = 200) -> list[list[bool]]:
    rng = np.random.default_rng(1)
    return [sample_condition(rng, t, {kind: 1.0}).tolist() for _ in range(n)]


def test_condition_kinds_give_their_masks():
    t = 6
    assert all(not any(m) for m in masks(ConditionKind.NONE, t))
    assert all(m == [True] + [False] * (t - 1) for m in masks(ConditionKind.FIRST_FRAME, t))
    for m in masks(ConditionKind.FIRST_CLIP, t):
        k = sum(m)
        assert 1 <= k < t and m == [True] * k + [False] * (t - k)
    for m in masks(ConditionKind.LAST_CLIP, t):
        k = sum(m)
        assert 1 <= k < t and m == [False] * (t - k) + [True] * k
    seen = set()
    for m in masks(ConditionKind.FIRST_LAST, t):
        a = m.index(False)
        b = m[::-1].index(False)
        assert (
            a >= 1 and b >= 1 and a + b < t and m == [True] * a + [False] * (t - a - b) + [True] * b
        )
        seen.add((a, b))
    assert len(seen) > 3  # block lengths vary
    counts = {sum(m) for m in masks(ConditionKind.RANDOM_FRAMES, t)}
    assert counts == set(range(1, t))  # 1..t-1 frames, never all


def test_short_clips_get_only_possible_kinds():
    rng = np.random.default_rng(0)
    everything = {k: 1.0 for k in ConditionKind}
    for _ in range(50):
        assert sample_condition(rng, 1, everything).tolist() == [False]  # an image: none
        assert sample_condition(rng, 2, {ConditionKind.FIRST_LAST: 1.0}).tolist() == [False] * 2
        assert not all(sample_condition(rng, 2, everything).tolist())


def test_condition_weights_are_validated():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown condition kind 'middle'; valid: none, first_fr"):
        sample_condition(rng, 4, {"middle": 1.0})
    with pytest.raises(ValueError, match="first_clip must be finite and >= 0"):
        sample_condition(rng, 4, {"first_clip": -1.0})
    with pytest.raises(ValueError, match="positive sum"):
        sample_condition(rng, 4, {"none": 0.0})
    assert sample_condition(rng, 4, {"first_frame": 2}).tolist() == [True, False, False, False]


# --- config ------------------------------------------------------------------------------------


def test_data_config_validates_and_round_trips():
    config = DataConfig(condition_weights={"none": 1.0, "first_frame": 1.0}, seed=3)
    assert config.condition_weights == {ConditionKind.NONE: 1.0, ConditionKind.FIRST_FRAME: 1.0}
    assert DataConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="caption_dropout must be a probability in"):
        DataConfig(caption_dropout=1.5)
    with pytest.raises(ValueError, match="token_budget must be a positive int, got 0"):
        DataConfig(token_budget=0)
    with pytest.raises(ValueError, match="unknown DataConfig fields"):
        DataConfig.from_dict({"batch_size": 4})


# --- step plans --------------------------------------------------------------------------------


def catalogue() -> list[ClipMeta]:
    """Videos of several sizes and lengths, an image, and a clip without text."""
    return [
        ClipMeta(64, 64, 33, True, True),
        ClipMeta(96, 64, 20, True, False),
        ClipMeta(64, 96, 9, False, True),
        ClipMeta(128, 72, 100, True, True),
        ClipMeta(64, 48, 1, True, True),  # an image
        ClipMeta(48, 64, 17, False, False),  # no text at all
    ]


def test_plan_is_a_pure_function_of_seed_and_step():
    config = DataConfig(token_budget=2000, max_frames=17)
    planner = Planner(config, catalogue(), GEOMETRY)
    assert planner.plan(5) == Planner(config, catalogue(), GEOMETRY).plan(5)
    assert planner.plan(5) != planner.plan(6)
    other_seed = DataConfig(token_budget=2000, max_frames=17, seed=1)
    assert Planner(other_seed, catalogue(), GEOMETRY).plan(5) != planner.plan(5)


def test_plan_fills_the_token_budget_with_valid_clips():
    config = DataConfig(token_budget=1500, max_frames=17, image_probability=0.2)
    planner = Planner(config, catalogue(), GEOMETRY)
    fills = []
    for step in range(40):
        plans = planner.plan(step)
        used = sum(p.tokens for p in plans)
        assert 0 < used <= config.token_budget
        fills.append(used / config.token_budget)
        for i, p in enumerate(plans):
            meta = catalogue()[p.source]
            assert p.index == i
            assert p.width * p.height <= config.pixel_budget and p.width % 8 == 0
            assert p.height % 8 == 0 and (p.frames - 1) % 4 == 0 and p.frames <= 17
            assert p.start + p.frames <= meta.frames
            left, top, w, h = p.crop
            assert left + w <= meta.width and top + h <= meta.height
            assert abs(w / h - p.width / p.height) < 0.05 * p.width / p.height
            t = 1 + (p.frames - 1) // 4
            assert p.latent_frames == t
            assert not all(p.condition) if t > 1 else p.condition == (False,)
            assert p.tokens == t * (p.height // 8) * (p.width // 8)
            if not (meta.has_prompt or meta.has_caption):
                assert p.text is TextChoice.EMPTY
    assert np.mean(fills) > 0.85  # packing leaves little of the budget unused
    frames = {p.frames for step in range(40) for p in planner.plan(step)}
    assert 1 in frames and 17 in frames  # images and long clips both occur


def test_text_choice_follows_dropout_and_detail_probabilities():
    metas = catalogue()
    dropped = Planner(DataConfig(caption_dropout=1.0, token_budget=2000), metas, GEOMETRY)
    assert all(p.text is TextChoice.EMPTY for p in dropped.plan(0))
    detailed = Planner(
        DataConfig(caption_dropout=0.0, detailed_caption_probability=1.0, token_budget=2000),
        metas,
        GEOMETRY,
    )
    for step in range(10):
        for p in detailed.plan(step):
            meta = metas[p.source]
            want = TextChoice.CAPTION if meta.has_caption else TextChoice.PROMPT
            assert p.text is (want if meta.has_prompt or meta.has_caption else TextChoice.EMPTY)


def test_plan_rejects_a_budget_smaller_than_a_clip():
    with pytest.raises(
        ValueError, match=r"token_budget=100 is smaller than the largest clip.*>= 576 or lower"
    ):
        Planner(DataConfig(token_budget=100), catalogue(), GEOMETRY)


def test_prefix_only_plans_take_clips_from_their_start_and_need_stored_sizes():
    stored = [ClipMeta(64, 64, 17, True, True), ClipMeta(72, 48, 9, True, False)]
    planner = Planner(DataConfig(token_budget=2000), stored, GEOMETRY, prefix_only=True)
    for p in planner.plan(0):
        assert p.start == 0 and p.crop == (0, 0, stored[p.source].width, stored[p.source].height)
    with pytest.raises(ValueError, match=r"cache entry 0 is stored at 64x64.*pixel_budget >= 4096"):
        Planner(DataConfig(pixel_budget=2048), stored, GEOMETRY, prefix_only=True)
