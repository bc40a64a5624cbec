"""Flow matching over packed spacetime tokens: the training loss and the sampling call.

This module composes the parts: `patches` (tokens and packing), `flow` (interpolation, targets,
timestep sampling), `sampling` (the solver loop) and a `DiT`. The model never loops and never
sees noise schedules; it predicts a velocity for tokens with a per-token timestep.

Per-token timesteps give every generation mode from one checkpoint: latent frames named in a
sample's `condition` are given clean (t = 0) and kept out of the loss; the rest are noised to the
sample's t and generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kinema.flow import (
    flow_loss,
    interpolate,
    sample_logit_normal,
    shift_timesteps,
    token_shift,
    velocity_target,
)
from kinema.patches import Packed, pack_sequences, patchify, unpatchify
from kinema.sampling import Condition, Solver, StepCallback, bind_text, sample
from kinema.transformer import DiT

Triple = tuple[int, int, int]


@dataclass
class TrainingSample:
    """One clip for a training step."""

    latents: Tensor  # (C, t, h, w) normalized VAE latents
    text: Tensor  # (L, D) its prompt's text tokens (L may be 0: text dropped for guidance)
    condition: Tensor | None = None  # (t,) bool: latent frames given clean (None: none)


@dataclass
class PackedBatch:
    packed: Packed  # tokens (N, D), positions (N, 3), sample_ids (N,)
    clean: Tensor  # (N,) bool: conditioning tokens (given at t = 0, not in the loss)
    text_tokens: Tensor  # (M, text_dim)
    text_ids: Tensor  # (M,) sample id of each text token


def pack_batch(
    samples: list[TrainingSample], patch: Triple, pad_to_multiple: int = 1
) -> PackedBatch:
    """Patchify every clip and pack clips and texts into one sequence each."""
    items, clean = [], []
    for s in samples:
        tokens, positions = patchify(s.latents, patch)  # (n, D), (n, 3)
        items.append((tokens, positions))
        frames = (
            s.condition
            if s.condition is not None
            else torch.zeros(s.latents.shape[1], dtype=torch.bool)
        )
        if frames.shape != (s.latents.shape[1],):
            raise ValueError(
                f"condition must be one flag per latent frame ({s.latents.shape[1]}), "
                f"got shape {tuple(frames.shape)}"
            )
        clean.append(frames[positions[:, 0] * patch[0]])  # (n,) per token, by its latent frame
    packed = pack_sequences(items, pad_to_multiple)
    clean_tokens = torch.cat([*clean, torch.zeros(packed.pad, dtype=torch.bool)])
    text_ids = torch.cat(
        [torch.full((len(s.text),), i, dtype=torch.long) for i, s in enumerate(samples)]
    )
    return PackedBatch(packed, clean_tokens, torch.cat([s.text for s in samples]), text_ids)


def flow_matching_loss(
    model: DiT,
    samples: list[TrainingSample],
    patch: Triple,
    generator: torch.Generator | None = None,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
) -> Tensor:
    """Rectified-flow loss on a packed batch: each clip gets its own t (logit-normal, shifted by
    its token count); conditioning tokens get t = 0 and no loss."""
    batch = pack_batch(samples, patch)
    packed = batch.packed
    t = sample_logit_normal((len(samples),), logit_mean, logit_std, generator)  # (B,)
    t = torch.stack([shift_timesteps(t[i], token_shift(n)) for i, n in enumerate(packed.lengths)])
    ids = packed.sample_ids.clamp_min(0)
    t_tokens = torch.where(batch.clean, 0.0, t[ids])  # (N,)
    x0 = packed.tokens
    noise = torch.randn(x0.shape, generator=generator)
    x_t = interpolate(x0, noise, t_tokens[:, None])  # (N, D)
    v = model(x_t, packed.positions, packed.sample_ids, t_tokens, batch.text_tokens, batch.text_ids)
    in_loss = (packed.sample_ids >= 0) & ~batch.clean
    return flow_loss(v, velocity_target(x0, noise), in_loss)


def draw_noise(
    shape: tuple[int, int, int, int], patch: Triple, generator: torch.Generator | None = None
) -> Tensor:
    """Starting noise (C, t, h, w) for a clip's latents, drawn token by token on the
    generator's device (CPU without one), so a seed gives the same noise on every device."""
    C, T, H, W = shape
    grid = (T // patch[0], H // patch[1], W // patch[2])
    N, D = grid[0] * grid[1] * grid[2], C * patch[0] * patch[1] * patch[2]
    device = generator.device if generator is not None else None
    return unpatchify(torch.randn((N, D), generator=generator, device=device), grid, C, patch)


@torch.no_grad()
def generate_latents(
    model: DiT,
    text: Tensor,
    negative_text: Tensor,
    shape: tuple[int, int, int, int],
    patch: Triple,
    steps: int = 20,
    guidance_scale: float = 1.0,
    solver: Solver = Solver.EULER,
    shift: float | None = None,
    given: Tensor | None = None,
    given_frames: Tensor | None = None,
    generator: torch.Generator | None = None,
    x_init: Tensor | None = None,
    sde_edit_strength: float | None = None,
    callback: StepCallback | None = None,
    guidance_min_t: float = 0.0,
    noise: Tensor | None = None,
) -> Tensor:
    """Sample one clip's latents (C, t, h, w) for text tokens (L, D).

    `given` (C, t, h, w) with `given_frames` (t,) bool keeps those latent frames clean: image to
    video, extension, connection. `shift` defaults to the token-count shift used in training.
    `x_init` (C, t, h, w) with `sde_edit_strength` s starts SDEdit at t = s from noised x_init.
    Noise is drawn on the generator's device (CPU without one) and moved to the model's, so a
    seed gives the same noise on every device. `callback(i, t, tokens)` runs after each step.
    Guidance applies at times t >= `guidance_min_t` (:func:`kinema.sampling.sample`).
    `noise` (C, t, h, w): the starting noise, instead of drawing it from `generator`.
    """
    C, T, H, W = shape
    device = next(model.parameters()).device
    grid = (T // patch[0], H // patch[1], W // patch[2])
    _, positions = patchify(torch.zeros(shape, device=device), patch)  # (N, 3)
    N = positions.shape[0]
    ids = torch.zeros(N, dtype=torch.long, device=device)

    def velocity(x: Tensor, t: Tensor, text_tokens: Tensor) -> Tensor:
        text_ids = torch.zeros(len(text_tokens), dtype=torch.long, device=device)
        return model(x, positions, ids, t, text_tokens.to(device), text_ids)

    # guidance's two texts as two samples of one packed sequence: one pass, the same velocities
    # (attention never crosses samples), with larger matrix products
    pair_positions, pair_ids = positions.repeat(2, 1), torch.cat([ids, ids + 1])  # (2N, 3), (2N,)

    def velocity_pair(x: Tensor, t: Tensor, cond: Tensor, uncond: Tensor) -> tuple[Tensor, Tensor]:
        texts = torch.cat([cond, uncond]).to(device)  # (Lc + Lu, D)
        text_ids = torch.cat([ids.new_zeros(len(cond)), ids.new_ones(len(uncond))])
        v = model(x.repeat(2, 1), pair_positions, pair_ids, t.repeat(2), texts, text_ids)
        return v[:N], v[N:]

    condition = None
    if given is not None:
        if given_frames is None:
            raise ValueError("given latents need given_frames: one bool per latent frame")
        tokens, _ = patchify(given.to(device), patch)  # (N, D)
        frames = given_frames.to(device)
        condition = Condition(tokens, frames[positions[:, 0] * patch[0]])
    init_tokens = None if x_init is None else patchify(x_init.to(device), patch)[0]  # (N, D)
    if noise is None:
        noise = draw_noise(shape, patch, generator)
    elif tuple(noise.shape) != tuple(shape):
        raise ValueError(f"noise of shape {tuple(noise.shape)} does not match latents {shape}")
    start = patchify(noise.to(device), patch)[0]  # (N, D)
    x = sample(
        bind_text(velocity, text, negative_text, pair=velocity_pair),
        start,
        steps,
        shift=token_shift(N) if shift is None else shift,
        solver=solver,
        guidance_scale=guidance_scale,
        condition=condition,
        sde_edit_strength=sde_edit_strength,
        x_init=init_tokens,
        callback=callback,
        step_generator=generator,
        guidance_min_t=guidance_min_t,
    )
    return unpatchify(x, grid, C, patch)
