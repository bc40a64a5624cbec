"""Generation modes as data: window layouts, latent masks and placeholders, without any model."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.modes import (
    Mode,
    ModeInputs,
    WindowGeometry,
    blend_seams,
    build_mode_spec,
    default_num_frames,
    fill_unknown,
    given_latent_frames,
    latent_groups,
    spans_of,
)

TC = 4
GEOMETRY = WindowGeometry(TC, max_window_latents=9, window_latents=9, context_latents=2)


def clip(n: int, value: int = 0) -> np.ndarray:
    """(n, 8, 8, 3) frames whose pixel value is value + frame index."""
    return (
        (value + np.arange(n, dtype=np.uint8))[:, None, None, None]
        .repeat(8, 1)
        .repeat(8, 2)
        .repeat(3, 3)
    )


def made_slots(spec) -> set[int]:
    return {int(s) for w in spec.windows for s in w.frame_ids[w.generate]}


def test_latent_groups_follow_the_causal_vae():
    assert latent_groups(1, TC) == [(0, 1)]
    assert latent_groups(9, TC) == [(0, 1), (1, 5), (5, 9)]
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        latent_groups(8, TC)


def test_given_latent_frames_and_mixed_groups():
    generate = np.array([False] + [True] * 4 + [False] * 4)
    assert given_latent_frames(generate, TC).tolist() == [True, False, True]
    generate[5] = True
    with pytest.raises(ValueError, match="mixes given and generated"):
        given_latent_frames(generate, TC)


def test_fill_unknown_blends_between_known_frames():
    frames = np.zeros((5, 2, 2, 3), np.uint8)
    frames[0], frames[4] = 0, 200
    known = np.array([True, False, False, False, True])
    filled = fill_unknown(frames, known)
    assert filled[:, 0, 0, 0].tolist() == [0, 50, 100, 150, 200]
    only_first = fill_unknown(frames, np.array([True, False, False, False, False]))
    assert (only_first == 0).all()
    with pytest.raises(ValueError, match="at least one known"):
        fill_unknown(frames, np.zeros(5, bool))


def test_blend_seams_carries_the_residual_of_given_frames_into_generated_ones():
    decoded = np.full((6, 2, 2, 3), 100, np.uint8)
    given = np.zeros_like(decoded)
    given[0], given[5] = 110, 80  # residuals +10 (left) and -20 (right)
    generate = np.array([False, True, True, True, True, False])
    # a run no longer than the fade: linear interpolation between the two residuals
    both = blend_seams(decoded, given, generate, fade=4)
    assert both[:, 0, 0, 0].tolist() == [100, 104, 98, 92, 86, 100]  # given frames as decoded
    # a longer run: the frame next to a given one takes all of its residual, which fades
    # out over the next `fade` frames
    short = blend_seams(decoded, given, generate, fade=2)
    assert short[:, 0, 0, 0].tolist() == [100, 110, 105, 90, 80, 100]
    forward = blend_seams(decoded, given, np.array([False] + [True] * 5), fade=2)
    assert forward[1:, 0, 0, 0].tolist() == [110, 105, 100, 100, 100]
    backward = blend_seams(decoded, given, np.array([True] * 5 + [False]), fade=2)
    assert backward[:5, 0, 0, 0].tolist() == [100, 100, 100, 90, 80]
    # nothing given or nothing generated: unchanged
    assert (blend_seams(decoded, given, np.ones(6, bool), fade=2) == decoded).all()
    assert (blend_seams(decoded, given, np.zeros(6, bool), fade=2) == decoded).all()
    with pytest.raises(ValueError, match="fade must be >= 1"):
        blend_seams(decoded, given, generate, fade=0)
    with pytest.raises(ValueError, match="a flag per frame"):
        blend_seams(decoded, given, generate[:5], fade=2)


def test_blend_seams_leaves_the_decoder_s_own_step_across_a_seam():
    rng = np.random.default_rng(0)
    decoded = rng.integers(100, 150, (8, 4, 4, 3), dtype=np.uint8)  # no clipping to [0, 255]
    given = rng.integers(100, 150, (8, 4, 4, 3), dtype=np.uint8)
    generate = np.array([False] * 3 + [True] * 5)
    out = blend_seams(decoded, given, generate, fade=4)
    # the first generated frame steps from the given frame exactly as the decoded window does
    step = out[3].astype(int) - given[2]
    np.testing.assert_array_equal(step, decoded[3].astype(int) - decoded[2])


def test_blend_seams_uses_the_nearest_given_frame_per_pixel():
    decoded = np.full((5, 2, 2, 3), 100, np.uint8)
    given = decoded.copy()
    given[0] = 150  # a given run of two frames: the nearer one (frame 1) counts
    given[1, 0, 0], given[1, 1, 1] = 130, 90  # residuals +30 and -10, per pixel
    given[4] = 80  # -20 on the other side
    generate = np.array([False, False, True, True, False])
    out = blend_seams(decoded, given, generate, fade=4)
    # frame 2: weights 1 (frame 1) and 0.75 (frame 4), scaled to add up to 1
    assert out[2, 0, 0, 0] == round(100 + (30 - 0.75 * 20) / 1.75)
    assert out[2, 1, 1, 0] == round(100 + (-10 - 0.75 * 20) / 1.75)
    assert out[2, 0, 1, 0] == round(100 + (0 - 0.75 * 20) / 1.75)
    bright = np.full_like(decoded, 250)
    target = bright.copy()
    target[0] = 255
    bright[0] = 200  # residual +55 would overflow: clipped to 255
    clipped = blend_seams(bright, target, np.array([False, True, True, True, True]), fade=4)
    assert clipped.dtype == np.uint8 and clipped[1, 0, 0, 0] == 255


def test_spans_of_runs():
    spans = spans_of(np.array([-1, -1, 0, 0, 1, -1]))
    assert [(s.start, s.stop, s.window) for s in spans] == [
        (0, 2, None),
        (2, 4, 0),
        (4, 5, 1),
        (5, 6, None),
    ]


def test_t2v_overflows_at_the_end_and_t2i_is_one_frame():
    spec = build_mode_spec(Mode.T2V, ModeInputs(), 14, GEOMETRY)
    (window,) = spec.windows
    assert window.num_frames == 17 and window.generate.all()
    assert (spec.output_start, spec.output_stop) == (0, 14)
    t2i = build_mode_spec("t2i", ModeInputs(), 1, GEOMETRY)
    assert t2i.windows[0].num_frames == 1 and t2i.num_frames == 1
    with pytest.raises(ValueError, match="mode long"):
        build_mode_spec(Mode.T2V, ModeInputs(), 34, GEOMETRY)


def test_image_first_t2v_makes_frame_0_then_the_clip_from_it():
    spec = build_mode_spec(Mode.T2V, ModeInputs(image_first=True), 14, GEOMETRY)
    image, rest = spec.windows
    assert image.frame_ids.tolist() == [0] and image.generate.all()
    assert rest.frame_ids.tolist() == list(range(17))
    assert given_latent_frames(rest.generate, TC).tolist() == [True] + [False] * 4
    assert (spec.output_start, spec.output_stop) == (0, 14) and made_slots(spec) == set(range(17))
    one = build_mode_spec(Mode.T2V, ModeInputs(image_first=True), 1, GEOMETRY)
    assert len(one.windows) == 1  # a 1-frame video is the image itself
    loop = build_mode_spec(Mode.LOOP, ModeInputs(image_first=True), 33, GEOMETRY)
    assert loop.loop and [w.num_frames for w in loop.windows] == [1, 33, 21]
    long = build_mode_spec(Mode.LONG, ModeInputs(image_first=True), 100, GEOMETRY)
    assert long.windows[0].frame_ids.tolist() == [0] and not long.windows[1].generate[0]
    assert made_slots(long) >= set(range(100))


def test_i2v_gives_the_first_latent_and_optionally_the_last():
    image = clip(1)[0]
    spec = build_mode_spec(Mode.I2V, ModeInputs(image=image), 33, GEOMETRY)
    (window,) = spec.windows
    assert given_latent_frames(window.generate, TC).tolist() == [True] + [False] * 8
    last = build_mode_spec(Mode.I2V, ModeInputs(image=image, last_image=image), 17, GEOMETRY)
    mask = given_latent_frames(last.windows[0].generate, TC)
    assert mask.tolist() == [True, False, False, False, True]
    assert [slot for slot, _ in last.given] == [0, 13]  # the last image held for 4 frames
    with pytest.raises(ValueError, match="nearest valid: 13 or 17"):
        build_mode_spec(Mode.I2V, ModeInputs(image=image, last_image=image), 15, GEOMETRY)


def test_extend_forward_chains_windows_with_context():
    video = clip(20)
    spec = build_mode_spec(Mode.EXTEND_FORWARD, ModeInputs(video=video), 40, GEOMETRY)
    assert (spec.output_start, spec.output_stop) == (0, 60)
    assert len(spec.windows) == 2  # 7 new latent frames (28 frames) per window
    first, second = spec.windows
    assert first.frame_ids[:5].tolist() == list(range(15, 20))  # the video's last 5 frames
    assert given_latent_frames(first.generate, TC).tolist() == [True, True] + [False] * 7
    assert second.frame_ids[0] == 48 - 5  # context: the last 5 frames the first window made
    assert made_slots(spec) >= set(range(20, 60))


def test_extend_backward_ends_with_the_video():
    video = clip(20)
    spec = build_mode_spec(Mode.EXTEND_BACKWARD, ModeInputs(video=video), 10, GEOMETRY)
    (window,) = spec.windows
    assert window.num_frames == 13 + 8  # 1 + 4*3 new frames, then 2 latent frames of the video
    offset = spec.given[0][0]
    assert window.frame_ids[-8:].tolist() == list(range(offset, offset + 8))
    assert given_latent_frames(window.generate, TC).tolist() == [False] * 4 + [True] * 2
    assert spec.output_stop - spec.output_start == 30 and spec.output_stop == offset + 20
    many = build_mode_spec(Mode.EXTEND_BACKWARD, ModeInputs(video=video), 60, GEOMETRY)
    assert made_slots(many) >= set(range(many.output_start, many.given[0][0]))


def test_connect_puts_the_transition_between_the_videos():
    a, b = clip(12), clip(9, 100)
    spec = build_mode_spec(Mode.CONNECT, ModeInputs(video=a, video2=b), 8, GEOMETRY)
    (window,) = spec.windows
    assert given_latent_frames(window.generate, TC).tolist() == [
        True,
        True,
        False,
        False,
        True,
        True,
    ]
    assert window.frame_ids.tolist() == list(range(7, 12 + 8 + 8))
    assert spec.num_frames == 12 + 8 + 9
    with pytest.raises(ValueError, match="nearest valid: 8 or 12"):
        build_mode_spec(Mode.CONNECT, ModeInputs(video=a, video2=b), 10, GEOMETRY)


def test_loop_regenerates_the_end_into_the_start():
    spec = build_mode_spec(Mode.LOOP, ModeInputs(), 33, GEOMETRY)
    first, closing = spec.windows
    assert spec.loop and first.generate.all()
    made = closing.frame_ids[closing.generate]
    assert made.tolist() == list(range(25, 33))  # the last 8 frames
    assert closing.frame_ids[-8:].tolist() == list(range(8))  # ... flow into the first 8
    with pytest.raises(ValueError, match="at least 17 frames"):
        build_mode_spec(Mode.LOOP, ModeInputs(), 13, GEOMETRY)


def test_long_is_a_first_window_then_extensions():
    spec = build_mode_spec(Mode.LONG, ModeInputs(), 480, GEOMETRY)
    assert spec.num_frames == 480
    assert spec.windows[0].generate.all() and spec.windows[0].num_frames == 33
    assert all(w.num_frames <= 33 for w in spec.windows)
    assert made_slots(spec) >= set(range(480))
    assert len(spec.windows) == 1 + -(-(480 - 33) // 28)


def test_edit_starts_from_the_source():
    video = clip(20)
    spec = build_mode_spec(Mode.EDIT, ModeInputs(video=video, strength=0.3), 17, GEOMETRY)
    (window,) = spec.windows
    assert window.strength == 0.3 and window.init_frames.shape[0] == 17 and window.generate.all()
    with pytest.raises(ValueError, match="strength must be in"):
        build_mode_spec(Mode.EDIT, ModeInputs(video=video, strength=1.5), 17, GEOMETRY)
    with pytest.raises(ValueError, match="needs a video of >= 25"):
        build_mode_spec(Mode.EDIT, ModeInputs(video=video), 25, GEOMETRY)


def test_inputs_are_checked_per_mode():
    with pytest.raises(ValueError, match="unknown mode 'zoom'; valid modes: t2v"):
        build_mode_spec("zoom", ModeInputs(), 9, GEOMETRY)
    with pytest.raises(ValueError, match="i2v needs image \\(--image\\)"):
        build_mode_spec(Mode.I2V, ModeInputs(), 9, GEOMETRY)
    with pytest.raises(ValueError, match="connect needs video2"):
        build_mode_spec(Mode.CONNECT, ModeInputs(video=clip(9)), 8, GEOMETRY)
    with pytest.raises(ValueError, match=r"t2v takes no image.*i2v"):
        build_mode_spec(Mode.T2V, ModeInputs(image=clip(1)[0]), 9, GEOMETRY)
    with pytest.raises(ValueError, match="too short for the context: it needs at least 5"):
        build_mode_spec(Mode.EXTEND_FORWARD, ModeInputs(video=clip(3)), 9, GEOMETRY)
    with pytest.raises(ValueError, match="needs at least 8"):
        build_mode_spec(Mode.EXTEND_BACKWARD, ModeInputs(video=clip(6)), 9, GEOMETRY)


def test_geometry_and_defaults():
    with pytest.raises(ValueError, match="must hold the 2 context latent frames"):
        WindowGeometry(TC, max_window_latents=9, window_latents=2, context_latents=2)
    video = ModeInputs(video=clip(20))
    assert default_num_frames(Mode.EXTEND_FORWARD, video, 33, 8.0, GEOMETRY) == 28
    assert default_num_frames(Mode.EXTEND_BACKWARD, video, 33, 8.0, GEOMETRY) == 25
    assert default_num_frames(Mode.CONNECT, video, 33, 8.0, GEOMETRY) == 20
    assert default_num_frames(Mode.EDIT, video, 33, 8.0, GEOMETRY) == 20
    assert default_num_frames(Mode.LONG, ModeInputs(), 33, 8.0, GEOMETRY) == 480
    assert default_num_frames(Mode.T2I, ModeInputs(), 33, 8.0, GEOMETRY) == 1
