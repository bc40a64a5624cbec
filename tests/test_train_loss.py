"""The training objective's timesteps: the token-count shift by default, a fixed one when set,
and an optional share of clips drawn from the top of the noise range."""

import pytest
import torch

from kinema.diffusion import TrainingSample
from kinema.flow import sample_logit_normal, shift_timesteps, token_shift
from kinema.train.config import PRESETS, ConfigError, load_config
from kinema.train.export import model_index
from kinema.train.loss import clip_generator, noisy_batch

PATCH = (1, 2, 2)


def _samples() -> list[TrainingSample]:
    g = torch.Generator().manual_seed(0)
    return [
        # 5 x 16 x 16 = 1,280 tokens: token_shift is above 1 here (it is 1 below 256 tokens)
        TrainingSample(torch.randn(4, 5, 32, 32, generator=g), torch.randn(5, 16, generator=g)),
        TrainingSample(torch.randn(4, 1, 8, 12, generator=g), torch.zeros(0, 16)),
    ]


def _clip_times(shift: float | None) -> list[float]:
    samples = _samples()
    batch = noisy_batch(samples, PATCH, [clip_generator(0, 7, i) for i in range(2)], shift=shift)
    ids = batch.sample_ids
    return [float(batch.timesteps[ids == i][0]) for i in range(len(samples))]


def _expected(shift_of_tokens) -> list[float]:
    tokens = [5 * 16 * 16, 1 * 4 * 6]
    out = []
    for i, n in enumerate(tokens):
        t = sample_logit_normal((1,), 0.0, 1.0, clip_generator(0, 7, i))
        out.append(float(shift_timesteps(t, shift_of_tokens(n))[0]))
    return out


def test_default_shift_follows_token_count():
    assert token_shift(5 * 16 * 16) > 1.0
    assert _clip_times(None) == _expected(token_shift)
    assert _clip_times(None) != _expected(lambda n: 1.0)


def test_fixed_shift_moves_every_clip_to_higher_noise():
    assert _clip_times(3.0) == _expected(lambda n: 3.0)
    assert all(a > b for a, b in zip(_clip_times(3.0), _clip_times(None), strict=True))


def test_exported_model_samples_with_the_training_shift():
    config = PRESETS["world-tiny"]
    assert config.model.timestep_shift == 3.0
    assert model_index(config, step=1).defaults.shift == config.model.timestep_shift


def test_a_sampling_shift_overrides_the_training_one_in_the_export():
    config = load_config(None, ["model.timestep_shift=30", "samples.shift=3"], preset="world-tiny")
    assert model_index(config, step=1).defaults.shift == 3.0
    with pytest.raises(ConfigError, match=r"samples\.shift must be positive"):
        load_config(None, ["samples.shift=0"], preset="world-tiny")


def _high_noise_times(fraction: float, clips: int = 200) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    samples = [
        TrainingSample(torch.randn(4, 2, 4, 4, generator=g), torch.zeros(0, 16))
        for _ in range(clips)
    ]
    generators = [clip_generator(0, 3, i) for i in range(clips)]
    batch = noisy_batch(samples, PATCH, generators, shift=3.0, high_noise_fraction=fraction)
    return torch.stack([batch.timesteps[batch.sample_ids == i][0] for i in range(clips)])


def test_high_noise_share_moves_that_share_of_clips_to_the_top_band():
    plain = _high_noise_times(0.0)
    assert (
        float((plain >= 0.97).float().mean()) < 0.05
    )  # the shifted logit-normal seldom goes there
    everything = _high_noise_times(1.0)
    assert bool(((everything >= 0.97) & (everything < 1.0)).all())
    share = float((_high_noise_times(0.5) >= 0.97).float().mean())
    assert 0.35 < share < 0.65, share


def test_no_high_noise_share_draws_as_before():
    generators = [clip_generator(0, 7, i) for i in range(2)]
    before = noisy_batch(_samples(), PATCH, generators, shift=3.0)
    generators = [clip_generator(0, 7, i) for i in range(2)]
    off = noisy_batch(_samples(), PATCH, generators, shift=3.0, high_noise_fraction=0.0)
    assert torch.equal(before.tokens, off.tokens) and torch.equal(before.timesteps, off.timesteps)
