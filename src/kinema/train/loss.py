"""The flow-matching objective of a training step, split so that ranks add up exactly.

`kinema.diffusion.flow_matching_loss` draws one batch's timesteps and noise from one generator
and returns a mean. A data-parallel step needs two things more:

- every clip's t and noise come from its own generator, seeded by (seed, step, clip index in the
  global batch), so a clip gets the same noise whichever rank it lands on;
- the loss is a sum of per-token squared errors plus a count, so the trainer can divide by the
  count over all ranks (`global_count`): DDP and FSDP average gradients over ranks, so rank r
  backpropagates ``sse_r / global_count * world_size`` and the averaged gradient is exactly the
  gradient of ``sum_r sse_r / global_count``, the one-process loss of the whole batch.

The math is the same as `flow_matching_loss`: logit-normal t per clip shifted by its token count
(or by a fixed shift),
clean conditioning tokens at t = 0 and out of the loss, target ``noise - x0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kinema.diffusion import TrainingSample, pack_batch
from kinema.flow import (
    interpolate,
    sample_logit_normal,
    shift_timesteps,
    token_shift,
    velocity_target,
)

__all__ = ["FlowBatch", "clip_generator", "noisy_batch", "placeholder_batch", "squared_error"]


def clip_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of clip `index` of step `step`'s global batch (CPU, device-independent)."""
    state = np.random.SeedSequence([seed, step, index]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@dataclass
class FlowBatch:
    """One packed sequence of noisy tokens with its targets: the DiT's inputs plus the loss's."""

    tokens: Tensor  # (N, D) x_t
    positions: Tensor  # (N, 3) (t, h, w) grid indices
    sample_ids: Tensor  # (N,) clip index within this sequence
    timesteps: Tensor  # (N,) per-token t (0 on conditioning tokens)
    text_tokens: Tensor  # (M, text_dim)
    text_ids: Tensor  # (M,) clip index of each text token
    target: Tensor  # (N, D) velocity target noise - x0
    loss_mask: Tensor  # (N,) bool: generated tokens (in the loss)

    @property
    def model_inputs(self) -> tuple[Tensor, ...]:
        return (
            self.tokens,
            self.positions,
            self.sample_ids,
            self.timesteps,
            self.text_tokens,
            self.text_ids,
        )

    @property
    def loss_count(self) -> int:
        return int(self.loss_mask.sum())

    @property
    def num_tokens(self) -> int:
        return int(self.tokens.shape[0])

    def to(self, device: torch.device | str) -> FlowBatch:
        return FlowBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def noisy_batch(
    samples: list[TrainingSample],
    patch: tuple[int, int, int],
    generators: list[torch.Generator],
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    shift: float | None = None,
    high_noise_fraction: float = 0.0,
    high_noise_min: float = 0.97,
) -> FlowBatch:
    """Pack clips and noise each to its own t with its own generator; t is shifted by `shift`,
    or by the clip's token count (`kinema.flow.token_shift`) when it is None. A share
    `high_noise_fraction` of clips instead draw t uniformly from [high_noise_min, 1) (with 0, the
    generators are drawn exactly as before the option existed)."""
    if len(generators) != len(samples):
        raise ValueError(f"need one generator per clip, got {len(generators)} for {len(samples)}")
    batch = pack_batch(samples, patch)
    packed = batch.packed
    x0 = packed.tokens  # (N, D)
    t_clips, noise = [], []
    for n, g in zip(packed.lengths, generators, strict=True):
        t = sample_logit_normal((1,), logit_mean, logit_std, g)  # (1,)
        t = shift_timesteps(t, token_shift(n) if shift is None else shift)
        if high_noise_fraction > 0:
            pick, u = torch.rand(2, generator=g, device=g.device)
            if pick < high_noise_fraction:
                t = (high_noise_min + (1 - high_noise_min) * u).reshape(1)
        t_clips.append(t)
        noise.append(torch.randn((n, x0.shape[1]), generator=g))  # (n, D)
    t_clip = torch.cat(t_clips)  # (B,)
    noise = torch.cat(noise)  # (N, D)
    t_tokens = torch.where(batch.clean, 0.0, t_clip[packed.sample_ids])  # (N,)
    return FlowBatch(
        tokens=interpolate(x0, noise, t_tokens[:, None]),
        positions=packed.positions,
        sample_ids=packed.sample_ids,
        timesteps=t_tokens,
        text_tokens=batch.text_tokens,
        text_ids=batch.text_ids,
        target=velocity_target(x0, noise),
        loss_mask=~batch.clean,
    )


def placeholder_batch(in_dim: int, text_dim: int) -> FlowBatch:
    """One zero token with nothing in the loss, for a rank that got no clip this step: it still
    runs forward and backward (zero gradient) so that DDP/FSDP collectives stay in step."""
    return FlowBatch(
        tokens=torch.zeros(1, in_dim),
        positions=torch.zeros(1, 3, dtype=torch.long),
        sample_ids=torch.zeros(1, dtype=torch.long),
        timesteps=torch.full((1,), 0.5),
        text_tokens=torch.zeros(0, text_dim),
        text_ids=torch.zeros(0, dtype=torch.long),
        target=torch.zeros(1, in_dim),
        loss_mask=torch.zeros(1, dtype=torch.bool),
    )


def squared_error(velocity: Tensor, batch: FlowBatch) -> Tensor:
    """Sum over loss tokens of the per-token mean squared error (float32 scalar)."""
    per_token = (velocity.float() - batch.target.float()).square().mean(dim=-1)  # (N,)
    return torch.where(batch.loss_mask, per_token, 0.0).sum()
