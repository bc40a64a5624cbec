"""Tests for kinema.flow: rectified-flow math checked against closed forms."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from kinema.flow import (
    flow_loss,
    interpolate,
    predict_noise,
    predict_x0,
    sample_logit_normal,
    shift_timesteps,
    token_shift,
    velocity_target,
)


def pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)


def test_interpolate_endpoints_and_per_token_times() -> None:
    x0, noise = pair()
    assert torch.equal(interpolate(x0, noise, 0.0), x0)
    assert torch.equal(interpolate(x0, noise, 1.0), noise)
    t = torch.tensor([[0.0, 1.0, 0.5, 0.0, 1.0]] * 2)  # (B, N), one time per token
    x_t = interpolate(x0, noise, t[..., None])
    assert torch.equal(x_t[:, 0], x0[:, 0]) and torch.equal(x_t[:, 1], noise[:, 1])
    assert torch.allclose(x_t[:, 2], 0.5 * (x0[:, 2] + noise[:, 2]))


def test_velocity_target_is_the_time_derivative_of_interpolate() -> None:
    x0, noise = pair(1)
    x0, noise = x0.double(), noise.double()
    h = 1e-6
    for t in (0.1, 0.5, 0.9):
        finite_diff = (interpolate(x0, noise, t + h) - interpolate(x0, noise, t - h)) / (2 * h)
        assert torch.allclose(finite_diff, velocity_target(x0, noise), atol=1e-8)


def test_predict_x0_and_noise_invert_the_path() -> None:
    x0, noise = pair(2)
    v = velocity_target(x0, noise)
    t = torch.rand(2, 5, 1, generator=torch.Generator().manual_seed(0))
    x_t = interpolate(x0, noise, t)
    assert torch.allclose(predict_x0(x_t, v, t), x0, atol=1e-6)
    assert torch.allclose(predict_noise(x_t, v, t), noise, atol=1e-6)


def test_shift_timesteps_fixed_points_monotone_identity() -> None:
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert torch.equal(shift_timesteps(t, 1.0), t)
    for shift in (0.3, 1.7, 3.0, 10.0):
        s = shift_timesteps(t, shift)
        assert s[0].item() == 0.0 and s[-1].item() == 1.0
        assert bool((s[1:] > s[:-1]).all())
        assert torch.allclose(s, shift * t / (1 + (shift - 1) * t))
    assert bool((shift_timesteps(t, 3.0)[1:-1] > t[1:-1]).all())  # shift > 1: toward noise
    with pytest.raises(ValueError, match="shift must be positive"):
        shift_timesteps(t, 0.0)


def test_token_shift_grows_with_tokens_and_hits_the_ends() -> None:
    assert token_shift(256) == pytest.approx(1.0)
    assert token_shift(4096) == pytest.approx(3.0)
    assert token_shift(16) == pytest.approx(1.0) and token_shift(100_000) == pytest.approx(3.0)
    counts = [256, 512, 1024, 2048, 4096]
    shifts = [token_shift(n) for n in counts]
    assert all(a < b for a, b in pairwise(shifts))
    assert token_shift(1024) == pytest.approx(math.sqrt(3.0))  # geometric midpoint (log-log)
    assert token_shift(100, base_tokens=10, max_tokens=1000, max_shift=4.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="num_tokens must be >= 1, got 0"):
        token_shift(0)


def test_flow_loss_ignores_masked_out_tokens() -> None:
    pred, target = pair(3)
    mask = torch.tensor([[True, False, True, False, False], [False, True, False, False, True]])
    loss = flow_loss(pred, target, mask)
    expected = (pred - target).square()[mask].mean()
    assert torch.allclose(loss, expected)
    changed = pred.clone()
    changed[~mask] = 1e3
    assert torch.equal(flow_loss(changed, target, mask), loss)
    assert flow_loss(pred, target, ~mask).item() != loss.item()
    per_token = torch.tensor([True, False, False, False, False])  # (N,) broadcasts over B
    assert torch.allclose(flow_loss(pred, target, per_token), (pred - target)[:, 0].square().mean())


def test_flow_loss_errors() -> None:
    pred, target = pair(4)
    with pytest.raises(ValueError, match="selects no tokens"):
        flow_loss(pred, target, torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="must be bool"):
        flow_loss(pred, target, torch.ones(2, 5))
    with pytest.raises(ValueError, match="does not broadcast"):
        flow_loss(pred, target, torch.ones(3, dtype=torch.bool))


def test_logit_normal_in_open_interval_and_reproducible() -> None:
    t1 = sample_logit_normal((2000,), generator=torch.Generator().manual_seed(7))
    t2 = sample_logit_normal((2000,), generator=torch.Generator().manual_seed(7))
    t3 = sample_logit_normal((2000,), generator=torch.Generator().manual_seed(8))
    assert torch.equal(t1, t2) and not torch.equal(t1, t3)
    assert bool(((t1 > 0) & (t1 < 1)).all())
    assert abs(t1.median().item() - 0.5) < 0.05
    shifted = sample_logit_normal((2000,), mean=1.0, generator=torch.Generator().manual_seed(7))
    assert shifted.median().item() > 0.65  # sigmoid(1) ~ 0.73
    with pytest.raises(ValueError, match="std must be positive"):
        sample_logit_normal((3,), std=0.0)
