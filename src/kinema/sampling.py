"""The sampler: ODE solvers, classifier-free guidance and condition masks. The model never loops.

A model is any callable ``model_fn(x, t, text) -> v`` (:class:`VelocityModel`):

- ``x``: tokens ``(..., N, D)``, feature axis last (e.g. ``(N, D)`` packed or ``(B, N, D)``);
- ``t``: float32 timestep per token, shape ``x.shape[:-1]`` (0 on conditioning tokens);
- ``text``: ``"cond"`` (the prompt) or ``"uncond"`` (empty or negative prompt). The text
  embeddings live inside ``model_fn`` (see :func:`bind_text`), so the sampler never touches them.

A model bound by :func:`bind_text` with a ``pair`` function evaluates the prompt and the
unconditional text in one call for guidance (``TextBoundModel.both``): one forward pass over both,
as two samples of one packed sequence, instead of two passes.

Time runs from t = 1 (noise) to t = 0 (data) along ``dx/dt = v`` (convention in :mod:`kinema.flow`).
Modes are data, not code: a :class:`Condition` marks tokens that are given clean (image->video,
extension, connection, looping), and SDEdit starts part-way down the schedule from a noised input.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise
from typing import Generic, Literal, Protocol, TypeVar

import torch
from torch import Tensor

from kinema.flow import interpolate, predict_x0, shift_timesteps

__all__ = [
    "Condition",
    "Solver",
    "TextBoundModel",
    "TextChoice",
    "VelocityModel",
    "bind_text",
    "check_guidance_min_t",
    "check_guidance_scale",
    "check_shift",
    "euler_step",
    "guided_velocity",
    "heun_step",
    "sample",
    "stochastic_step",
    "timestep_schedule",
]

TextChoice = Literal["cond", "uncond"]
E = TypeVar("E")


class VelocityModel(Protocol):
    """``model_fn(x (..., N, D), t (..., N) float32, text) -> v (..., N, D)``."""

    def __call__(self, x: Tensor, t: Tensor, text: TextChoice) -> Tensor: ...


VelocityFn = Callable[[Tensor, float], Tensor]  # (x, t) -> v, conditioning and guidance applied
StepCallback = Callable[[int, float, Tensor], None]  # (step index, time x now sits at, x)


class Solver(Enum):
    EULER = "euler"  # first order, one model evaluation per step
    HEUN = "heun"  # second order, two evaluations per step (one on the last step to t = 0)
    # one evaluation per step: predict x0, then noise it afresh to the next time (ancestral, as
    # diffusers' flow-matching Euler with stochastic_sampling); deterministic given a generator
    STOCHASTIC = "stochastic"

    @classmethod
    def parse(cls, value: Solver | str) -> Solver:
        """A solver from its name, or a ValueError that names the valid ones."""
        try:
            return cls(value)
        except ValueError:
            valid = [s.value for s in cls]
            raise ValueError(f"unknown solver {value!r}; valid solvers are {valid}") from None


@dataclass
class Condition:
    """Clean tokens given to the sampler: where ``mask`` is True, x stays equal to ``latents``.

    latents: same shape as the sampled ``x`` ``(..., N, D)`` (values off the mask are ignored);
    mask: bool broadcastable to ``x.shape[:-1]`` (one flag per token, e.g. ``positions[:, 0] < k``
    for the first k latent frames).
    """

    latents: Tensor
    mask: Tensor

    def __post_init__(self) -> None:
        if self.mask.dtype != torch.bool:
            raise ValueError(f"Condition.mask must be bool, got {self.mask.dtype}")


class TextBoundModel(Generic[E]):
    """A :class:`VelocityModel` with its two texts bound: ``model(x, t, embedding)``, and
    optionally ``pair(x, t, cond, uncond) -> (v_cond, v_uncond)``, one call for both texts."""

    def __init__(
        self,
        model: Callable[[Tensor, Tensor, E], Tensor],
        cond: E,
        uncond: E,
        pair: Callable[[Tensor, Tensor, E, E], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        self.model, self.pair = model, pair
        self.texts = {"cond": cond, "uncond": uncond}

    def __call__(self, x: Tensor, t: Tensor, text: TextChoice) -> Tensor:
        return self.model(x, t, self.texts[text])

    def both(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(v_cond, v_uncond): from one ``pair`` call where there is one, else two calls."""
        if self.pair is None:
            return self(x, t, "cond"), self(x, t, "uncond")
        return self.pair(x, t, self.texts["cond"], self.texts["uncond"])


def bind_text(
    model: Callable[[Tensor, Tensor, E], Tensor],
    cond: E,
    uncond: E,
    pair: Callable[[Tensor, Tensor, E, E], tuple[Tensor, Tensor]] | None = None,
) -> TextBoundModel[E]:
    """Turn ``model(x, t, text_embedding)`` into a :class:`VelocityModel`; ``uncond`` may be a
    negative prompt's embedding. ``pair(x, t, cond, uncond)``, where given, must return what two
    ``model`` calls would: guidance then evaluates both texts in one call."""
    return TextBoundModel(model, cond, uncond, pair)


def timestep_schedule(steps: int, shift: float = 1.0) -> Tensor:
    """Times from 1 to 0 for ``steps`` steps, shifted toward noise: float64 ``(steps + 1,)``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


def euler_step(x: Tensor, v: Tensor, t: float, t_next: float) -> Tensor:
    """One Euler step of ``dx/dt = v`` from t to t_next (t_next < t when sampling)."""
    return x + (t_next - t) * v


def heun_step(velocity_fn: VelocityFn, x: Tensor, t: float, t_next: float) -> Tensor:
    """Heun (trapezoid) step; falls back to Euler on the final step to t = 0 (one evaluation)."""
    v = velocity_fn(x, t)
    x_euler = euler_step(x, v, t, t_next)
    if t_next == 0:
        return x_euler
    v_next = velocity_fn(x_euler, t_next)
    return euler_step(x, 0.5 * (v + v_next), t, t_next)


def stochastic_step(x: Tensor, v: Tensor, t: float, t_next: float, noise: Tensor) -> Tensor:
    """Jump to the clean data ``x0 = x - t v`` the velocity implies, then back out to ``t_next``
    along fresh ``noise``: ``(1 - t_next) x0 + t_next noise`` (``x0`` itself at t_next = 0)."""
    return interpolate(predict_x0(x, v, t), noise, t_next)


def guided_velocity(
    model_fn: VelocityModel, x: Tensor, t_tokens: Tensor, guidance_scale: float
) -> Tensor:
    """Classifier-free guidance ``v_u + g (v_c - v_u)``; one model call when ``g == 1``, and
    one for both texts when ``model_fn`` is a :class:`TextBoundModel` (two calls otherwise)."""
    if guidance_scale == 1.0:
        return _shaped_like(x, model_fn(x, t_tokens, "cond"))
    if isinstance(model_fn, TextBoundModel):
        v_cond, v_uncond = model_fn.both(x, t_tokens)
    else:
        v_cond, v_uncond = model_fn(x, t_tokens, "cond"), model_fn(x, t_tokens, "uncond")
    v_cond, v_uncond = _shaped_like(x, v_cond), _shaped_like(x, v_uncond)
    return v_uncond + guidance_scale * (v_cond - v_uncond)


def _shaped_like(x: Tensor, v: Tensor) -> Tensor:
    if v.shape != x.shape:
        raise ValueError(f"model returned {tuple(v.shape)}, expected x's {tuple(x.shape)}")
    return v


def check_guidance_min_t(value: float, name: str = "guidance_min_t") -> float:
    """``value`` if it is a time in [0, 1] below which guidance stops, else a ValueError naming
    ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1] (0: guide every step), got {value!r}")
    return float(value)


def check_guidance_scale(value: float, name: str = "guidance_scale") -> float:
    """``value`` if it is a finite classifier-free guidance scale >= 0 (0: the unconditional
    velocity alone, 1: the conditional one alone), else a ValueError naming ``name``."""
    if not _is_number(value) or not 0 <= value < math.inf:
        raise ValueError(
            f"{name} must be a finite number >= 0 (0: the unconditional velocity alone, 1: the "
            f"conditional one alone), got {value!r}"
        )
    return float(value)


def check_shift(value: float | None, name: str = "shift") -> float | None:
    """``value`` if it is None (the shift of the training token count) or a finite timestep
    shift > 0 (1: none), else a ValueError naming ``name``."""
    if value is None:
        return None
    if not _is_number(value) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a finite number > 0 (1: no shift) or None, got {value!r}")
    return float(value)


def _is_number(value: object) -> bool:
    """A real number (numpy's included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _at_or_above(t: float, threshold: float) -> bool:
    """``t >= threshold`` in float32, the precision the model reads t in (and the high-noise
    expert's routing compares in), so a schedule time that rounds to the threshold counts."""
    as_float32 = torch.tensor([t, threshold], dtype=torch.float32)
    return bool(as_float32[0] >= as_float32[1])


def _velocity_fn(
    model_fn: VelocityModel,
    guidance_scale: float,
    condition: Condition | None,
    like: Tensor,
    guidance_min_t: float = 0.0,
) -> VelocityFn:
    """(x, t) -> v with per-token times (0 on conditioned tokens) and zero velocity there;
    guided at times t >= guidance_min_t, the conditional velocity alone below."""
    token_shape = like.shape[:-1]
    given = torch.zeros(token_shape, dtype=torch.bool, device=like.device)  # (..., N)
    if condition is not None:
        given = torch.broadcast_to(condition.mask.to(like.device), token_shape)  # (..., N)

    def velocity(x: Tensor, t: float) -> Tensor:
        t_tokens = torch.full(token_shape, t, dtype=torch.float32, device=x.device)  # (..., N)
        t_tokens = t_tokens.masked_fill(given, 0.0)
        scale = guidance_scale if _at_or_above(t, guidance_min_t) else 1.0
        v = guided_velocity(model_fn, x, t_tokens, scale)  # (..., N, D)
        return v.masked_fill(given[..., None], 0.0)  # conditioned tokens never move

    return velocity


def _check_condition(condition: Condition, x: Tensor) -> None:
    if condition.latents.shape != x.shape:
        shapes = f"{tuple(condition.latents.shape)} vs {tuple(x.shape)}"
        raise ValueError(f"Condition.latents must have the sampled shape, got {shapes}")
    try:
        torch.broadcast_shapes(condition.mask.shape, x.shape[:-1])
    except RuntimeError:
        shapes = f"{tuple(condition.mask.shape)} to tokens {tuple(x.shape[:-1])}"
        raise ValueError(f"Condition.mask does not broadcast: {shapes}") from None


def _start(
    noise: Tensor | Sequence[int],
    generator: torch.Generator | None,
    x_init: Tensor | None,
    strength: float | None,
) -> tuple[Tensor, float]:
    """Start state and time: pure noise at t = 1, or SDEdit's noised x_init at t = strength."""
    if isinstance(noise, Tensor):
        if generator is not None:
            raise ValueError("pass either a noise tensor or a generator (with a shape), not both")
    else:
        device = generator.device if generator is not None else None
        noise = torch.randn(tuple(noise), generator=generator, device=device)
    if strength is None:
        if x_init is not None:
            raise ValueError(
                "x_init is only used with sde_edit_strength; pass a strength in [0, 1]"
            )
        return noise, 1.0
    if x_init is None:
        raise ValueError("sde_edit_strength needs x_init (the latents to edit), got None")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"sde_edit_strength must be in [0, 1], got {strength}")
    if x_init.shape != noise.shape:
        raise ValueError(f"x_init {tuple(x_init.shape)} and noise {tuple(noise.shape)} differ")
    return interpolate(x_init, noise.to(x_init), strength), strength


def sample(
    model_fn: VelocityModel,
    noise: Tensor | Sequence[int],
    steps: int,
    shift: float = 1.0,
    solver: Solver | str = Solver.EULER,
    guidance_scale: float = 1.0,
    condition: Condition | None = None,
    sde_edit_strength: float | None = None,
    x_init: Tensor | None = None,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
    step_generator: torch.Generator | None = None,
    guidance_min_t: float = 0.0,
) -> Tensor:
    """Integrate ``dx/dt = v`` from noise (t = 1) to data (t = 0); returns x at t = 0.

    noise: the starting noise ``(..., N, D)``, or its shape to draw with ``generator``.
    sde_edit_strength: SDEdit; start at ``interpolate(x_init, noise, s)`` and run only the part of
    the ``steps``-step schedule below ``s`` (s = 0 returns x_init, s = 1 is plain sampling).
    callback(i, t, x) runs after step i with x at time t. Deterministic given noise or generator;
    the stochastic solver draws its fresh noise from ``step_generator`` (by default ``generator``
    when the noise is drawn from one, else torch's global generator), on that generator's device.
    guidance_min_t: guidance only in the noisy part of the schedule: a model evaluation at time
    t >= guidance_min_t (compared in float32) is guided, one below it takes the conditional
    velocity alone (one model call), as guidance in a limited interval (Kynkaanniemi et al.,
    2024); 0 guides every step.
    """
    check_guidance_min_t(guidance_min_t)
    check_guidance_scale(guidance_scale)
    solver = Solver.parse(solver)
    if step_generator is None and not isinstance(noise, Tensor):
        step_generator = generator  # one seeded generator drives the start and every step
    x, t_start = _start(noise, generator, x_init, sde_edit_strength)
    if condition is not None:
        _check_condition(condition, x)
        x = torch.where(condition.mask[..., None], condition.latents.to(x), x)  # (..., N, D)
    velocity = _velocity_fn(model_fn, guidance_scale, condition, x, guidance_min_t)
    schedule = timestep_schedule(steps, shift)
    times = [t_start] + [t for t in schedule.tolist() if t < t_start]  # t_start ... 0
    for i, (t, t_next) in enumerate(pairwise(times)):
        if solver is Solver.HEUN:
            x = heun_step(velocity, x, t, t_next)
        elif solver is Solver.STOCHASTIC:
            device = step_generator.device if step_generator is not None else None
            fresh = torch.randn(x.shape, generator=step_generator, device=device).to(x)
            x = stochastic_step(x, velocity(x, t), t, t_next, fresh)
            if condition is not None:  # given tokens are clean, never noised afresh
                x = torch.where(condition.mask[..., None], condition.latents.to(x), x)
        else:
            x = euler_step(x, velocity(x, t), t, t_next)
        if callback is not None:
            callback(i, t_next, x)
    return x
