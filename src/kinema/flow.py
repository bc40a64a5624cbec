"""Rectified flow (flow matching on straight paths) as small pure functions.

Convention used everywhere in Kinema::

    x_t = (1 - t) * x0 + t * eps        t in [0, 1]
    t = 0 is clean data, t = 1 is pure Gaussian noise eps
    v   = dx_t/dt = eps - x0             the transformer predicts v

Sampling integrates dx/dt = v from t = 1 down to t = 0 (see :mod:`kinema.sampling`).

Time arguments ``t`` are floats or tensors that broadcast against ``x``. For tokens ``(..., N, D)``
with a timestep per token ``(..., N)``, add the feature axis yourself: ``t[..., None]``.

Timestep shift (SD3 / flux): ``shift_timesteps(t, s) = s*t / (1 + (s-1)*t)`` moves time toward the
noisy end for ``s > 1``. More tokens carry more redundant signal at the same noise level, so larger
or longer videos need a larger shift; :func:`token_shift` picks it from the spacetime token count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "flow_loss",
    "interpolate",
    "predict_noise",
    "predict_x0",
    "sample_logit_normal",
    "shift_timesteps",
    "token_shift",
    "velocity_target",
]

TimeLike = Tensor | float


def interpolate(x0: Tensor, noise: Tensor, t: TimeLike) -> Tensor:
    """Point on the straight path: ``x_t = (1 - t) x0 + t noise``; ``t`` broadcasts against x0."""
    return (1 - t) * x0 + t * noise


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """Training target ``v = dx_t/dt = noise - x0`` (constant along the path)."""
    return noise - x0


def predict_x0(x_t: Tensor, v: Tensor, t: TimeLike) -> Tensor:
    """Clean data implied by a velocity at time t: ``x0 = x_t - t v``."""
    return x_t - t * v


def predict_noise(x_t: Tensor, v: Tensor, t: TimeLike) -> Tensor:
    """Noise implied by a velocity at time t: ``eps = x_t + (1 - t) v``."""
    return x_t + (1 - t) * v


def sample_logit_normal(
    shape: Sequence[int],
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Training times ``t = sigmoid(mean + std * n)``, n ~ N(0, 1): float32 in (0, 1) (SD3).

    Drawn on the generator's device (CPU without one); reproducible for a seeded generator.
    """
    if std <= 0:
        raise ValueError(f"std must be positive, got {std}")
    device = generator.device if generator is not None else None
    n = torch.randn(tuple(shape), generator=generator, device=device)
    return torch.sigmoid(mean + std * n)


def shift_timesteps(t: TimeLike, shift: float) -> TimeLike:
    """SD3/flux shift ``s t / (1 + (s - 1) t)``: fixes 0 and 1, monotone, identity for s = 1.

    Computed as ``t / (t + (1 - t) / s)`` (the same function) so that 0 and 1 map exactly.
    """
    if not shift > 0:
        raise ValueError(f"shift must be positive (1.0 = no shift), got {shift}")
    return t / (t + (1 - t) / shift)


def token_shift(
    num_tokens: int,
    base_tokens: int = 256,
    max_tokens: int = 4096,
    base_shift: float = 1.0,
    max_shift: float = 3.0,
) -> float:
    """Timestep shift for a sequence of ``num_tokens`` spacetime tokens (resolution x duration).

    ``log(shift)`` is linear in ``log(num_tokens)``: ``base_shift`` at ``base_tokens`` and
    ``max_shift`` at ``max_tokens``, i.e. a power law ``shift ∝ num_tokens**k``, the form of SD3's
    resolution shift ``sqrt(m/n)`` (defaults give k = log 3 / log 16 ≈ 0.40). Unlike flux, which
    puts ``mu = log(shift)`` linear in the token count itself and extrapolates, the shift is
    clamped to ``[base_shift, max_shift]`` outside the calibrated token range.
    """
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
    if not 1 <= base_tokens < max_tokens:
        raise ValueError(f"need 1 <= base_tokens < max_tokens, got {base_tokens}, {max_tokens}")
    if not 0 < base_shift <= max_shift:
        raise ValueError(f"need 0 < base_shift <= max_shift, got {base_shift}, {max_shift}")
    frac = (math.log(num_tokens) - math.log(base_tokens)) / (
        math.log(max_tokens) - math.log(base_tokens)
    )
    frac = min(max(frac, 0.0), 1.0)
    return math.exp((1 - frac) * math.log(base_shift) + frac * math.log(max_shift))


def flow_loss(pred: Tensor, target: Tensor, loss_mask: Tensor) -> Tensor:
    """MSE over the tokens where ``loss_mask`` is True.

    pred, target: ``(..., N, D)``; loss_mask: bool broadcastable to ``(..., N)`` (one per token;
    False on conditioning and padding tokens). Returns a scalar averaged over selected tokens x D.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    if loss_mask.dtype != torch.bool:
        raise ValueError(f"loss_mask must be bool, got {loss_mask.dtype}")
    token_shape = pred.shape[:-1]
    try:
        mask = torch.broadcast_to(loss_mask, token_shape)  # (..., N)
    except RuntimeError as err:
        raise ValueError(
            f"loss_mask {tuple(loss_mask.shape)} does not broadcast to tokens {tuple(token_shape)}"
        ) from err
    if not bool(mask.any()):
        raise ValueError("loss_mask selects no tokens: nothing to average the loss over")
    per_token = (pred.float() - target.float()).square().mean(dim=-1)  # (..., N)
    return per_token[mask].mean()
