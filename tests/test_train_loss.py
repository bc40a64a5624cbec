"""The training objective's timesteps: the token-count shift by default, a fixed one when set."""

import torch

from kinema.diffusion import TrainingSample
from kinema.flow import sample_logit_normal, shift_timesteps, token_shift
from kinema.train.config import PRESETS
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
