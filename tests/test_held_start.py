"""Held start: the latents a window given frames starts from."""

import pytest
import torch

from kinema.held_start import check_held_start, content_shift, held_latents


def latents(values: list[float]) -> torch.Tensor:
    """(2, t, 3, 3) latents whose frame j is filled with values[j] (channel 1 negated)."""
    x = torch.tensor(values).view(1, -1, 1, 1).expand(2, -1, 3, 3).clone()
    x[1] *= -1
    return x


def test_new_frames_hold_the_given_frame_on_their_one_side():
    given = latents([1.0, 2.0, 0.0, 0.0, 0.0])  # extend forward: two given, three new
    held = held_latents(given, torch.tensor([True, True, False, False, False]))
    assert torch.equal(held, latents([1.0, 2.0, 2.0, 2.0, 2.0]))
    given = latents([0.0, 0.0, 5.0, 7.0])  # extend backward: new frames before the given
    held = held_latents(given, torch.tensor([False, False, True, True]))
    assert torch.equal(held, latents([5.0, 5.0, 5.0, 7.0]))


def test_new_frames_between_two_given_frames_are_interpolated_by_position():
    given = latents([3.0, 0.0, 0.0, 0.0, 7.0, 9.0])  # connect: A's end, three new, B's start
    held = held_latents(given, torch.tensor([True, False, False, False, True, True]))
    assert torch.allclose(held, latents([3.0, 4.0, 5.0, 6.0, 7.0, 9.0]))
    assert torch.equal(given, latents([3.0, 0.0, 0.0, 0.0, 7.0, 9.0]))  # the input is not changed


def test_held_latents_refuses_bad_inputs():
    with pytest.raises(ValueError, match="at least one given latent frame"):
        held_latents(latents([1.0, 2.0]), torch.tensor([False, False]))
    with pytest.raises(
        ValueError, match=r"one flag per latent frame, got \(2, 2, 3, 3\) and \(3,\)"
    ):
        held_latents(latents([1.0, 2.0]), torch.tensor([True, False, False]))


@pytest.mark.parametrize("value", [0, 0.0, -0.5, 1.5, float("nan"), True, "0.8", None])
def test_check_held_start_names_a_bad_value(value):
    with pytest.raises(
        ValueError, match=r"held_start must be a number greater than 0 and at most 1"
    ):
        check_held_start(value)


def test_check_held_start_takes_values_in_the_unit_interval():
    assert check_held_start(1) == 1.0 and check_held_start(0.75) == 0.75


def smooth_image(seed: int, size: int = 32) -> torch.Tensor:
    """(size, size, 3) smooth random image: noise blurred three times by its four neighbours."""
    x = torch.randn(3, size, size, generator=torch.Generator().manual_seed(seed))
    for _ in range(3):
        x = (x + x.roll(1, -1) + x.roll(-1, -1) + x.roll(1, -2) + x.roll(-1, -2)) / 5
    return x.permute(1, 2, 0)


def test_content_shift_finds_how_far_content_moved():
    a = smooth_image(0)
    b = a.roll(shifts=(-2, 3), dims=(0, 1))  # content 3 px right and 2 px up
    dx, dy = content_shift(a, b)
    assert (dx, dy) == pytest.approx((3.0, -2.0), abs=0.15)
    assert content_shift(a, a) == pytest.approx((0.0, 0.0), abs=0.05)
    assert content_shift(torch.zeros(16, 16), torch.zeros(16, 16)) == (0.0, 0.0)  # flat
    far = a.roll(shifts=(0, 12), dims=(0, 1))  # beyond max_shift: not looked for
    assert abs(content_shift(a, far)[0] - 12) > 1
    with pytest.raises(ValueError, match="two frames of one size"):
        content_shift(torch.zeros(16, 16), torch.zeros(16, 8))


def test_held_frames_move_on_at_the_given_velocity():
    given = torch.zeros(1, 4, 8, 8)
    given[0, 1, 2, 3] = 1.0  # one bright latent pixel in the last given frame
    flags = torch.tensor([True, True, False, False])
    held = held_latents(given, flags, velocity=(1.0, 0.0))  # one latent pixel right per frame
    assert torch.allclose(held[0, 2], given[0, 1].roll(1, -1), atol=1e-6)
    assert torch.allclose(held[0, 3], given[0, 1].roll(2, -1), atol=1e-6)
    back = held_latents(given.flip(1), flags.flip(0), velocity=(0.0, 1.0))  # new frames first
    assert torch.allclose(back[0, 1], given[0, 1].roll(-1, -2), atol=1e-6)  # one frame earlier
    assert torch.allclose(back[0, 0], given[0, 1].roll(-2, -2), atol=1e-6)
