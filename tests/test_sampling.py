"""Tests for kinema.sampling: solvers on closed-form flows, condition masks, CFG and SDEdit."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import Tensor

from kinema.flow import interpolate
from kinema.sampling import (
    Condition,
    Solver,
    TextChoice,
    bind_text,
    check_guidance_scale,
    check_shift,
    euler_step,
    guided_velocity,
    heun_step,
    sample,
    stochastic_step,
    timestep_schedule,
)

SHAPE = (2, 6, 4)  # (B, N, D) tokens


def randn(seed: int, shape: tuple[int, ...] = SHAPE) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@dataclass
class StraightFlow:
    """Exact velocity of the straight path from ``noise`` to a fixed ``x0``; records its calls."""

    x0: Tensor
    noise: Tensor
    calls: list[tuple[Tensor, Tensor, TextChoice]] = field(default_factory=list)

    def __call__(self, x: Tensor, t: Tensor, text: TextChoice) -> Tensor:
        self.calls.append((x.clone(), t.clone(), text))
        return self.noise - self.x0


@dataclass
class PullToTarget:
    """A state-dependent field ``v = (x - target) / t``: its flow ends exactly at ``target``."""

    target: Tensor
    calls: list[TextChoice] = field(default_factory=list)

    def __call__(self, x: Tensor, t: Tensor, text: TextChoice) -> Tensor:
        self.calls.append(text)
        offset = 0.0 if text == "cond" else 1.0
        return (x - self.target - offset) / t.clamp_min(1e-3)[..., None]


def test_timestep_schedule() -> None:
    s = timestep_schedule(4)
    assert torch.allclose(s, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    shifted = timestep_schedule(4, shift=3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0 and bool((shifted[1:-1] > s[1:-1]).all())
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        timestep_schedule(0)


@pytest.mark.parametrize("solver", [Solver.EULER, Solver.HEUN, "heun"])
@pytest.mark.parametrize(("steps", "shift"), [(1, 1.0), (3, 1.0), (7, 3.0), (12, 0.5)])
def test_straight_flow_reaches_x0(solver: Solver | str, steps: int, shift: float) -> None:
    x0, noise = randn(0), randn(1)
    out = sample(StraightFlow(x0, noise), noise, steps, shift=shift, solver=solver)
    assert (out - x0).abs().max().item() < 1e-5


def test_heun_step_is_second_order_and_falls_back_to_euler_at_zero() -> None:
    calls: list[float] = []

    def velocity(x: Tensor, t: float) -> Tensor:  # dx/dt = 2t x  ->  x(t) = x(1) exp(t^2 - 1)
        calls.append(t)
        return 2 * t * x

    x = torch.ones(1, dtype=torch.float64)
    heun = heun_step(velocity, x, 1.0, 0.9)
    euler = euler_step(x, velocity(x, 1.0), 1.0, 0.9)
    exact = torch.exp(torch.tensor(0.81 - 1.0, dtype=torch.float64))
    assert (heun - exact).abs() < 0.2 * (euler - exact).abs()
    calls.clear()
    last = heun_step(velocity, x, 0.1, 0.0)
    assert calls == [0.1] and torch.equal(last, euler_step(x, 0.2 * x, 0.1, 0.0))


def test_state_dependent_flow_with_heun() -> None:
    target = randn(2)
    out = sample(PullToTarget(target), randn(3), steps=8, solver=Solver.HEUN)
    assert (out - target).abs().max().item() < 1e-4


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_stochastic_solver_lands_on_the_data_an_exact_model_implies(steps: int) -> None:
    target = randn(2)
    gen = torch.Generator().manual_seed(7)
    out = sample(PullToTarget(target), randn(3), steps, solver="stochastic", step_generator=gen)
    assert (out - target).abs().max().item() < 1e-4


def test_stochastic_solver_is_reproducible_from_its_generator_and_differs_from_euler() -> None:
    x0, noise = randn(0), randn(1)

    class Blend:  # a field whose answer depends on x, so fresh noise changes the result
        def __call__(self, x: Tensor, t: Tensor, text: TextChoice) -> Tensor:
            return noise - x0 + 0.5 * x

    def run(seed: int) -> Tensor:
        gen = torch.Generator().manual_seed(seed)
        return sample(Blend(), noise, 6, solver=Solver.STOCHASTIC, step_generator=gen)

    assert torch.equal(run(3), run(3))
    assert not torch.allclose(run(3), run(4))
    # with the noise drawn from a generator, that generator also drives every step
    shape = tuple(noise.shape)
    a = sample(Blend(), shape, 6, solver="stochastic", generator=torch.Generator().manual_seed(1))
    b = sample(Blend(), shape, 6, solver="stochastic", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.allclose(run(3), sample(Blend(), noise, 6, solver=Solver.EULER))


def test_stochastic_step_renoises_the_implied_x0() -> None:
    x, v, fresh = randn(0), randn(1), randn(2)
    x0 = x - 0.8 * v
    assert torch.allclose(stochastic_step(x, v, 0.8, 0.5, fresh), 0.5 * x0 + 0.5 * fresh)
    assert torch.allclose(stochastic_step(x, v, 0.8, 0.0, fresh), x0)


@pytest.mark.parametrize("solver", list(Solver))
def test_conditioned_tokens_stay_clean_and_see_t_zero(solver: Solver) -> None:
    x0, noise, given = randn(0), randn(1), randn(5)
    mask = torch.tensor([True, False, False, True, False, False])  # (N,) e.g. first-frame tokens
    model = StraightFlow(x0, noise)
    seen: list[Tensor] = []
    out = sample(
        model,
        noise,
        steps=4,
        solver=solver,
        condition=Condition(given, mask),
        callback=lambda i, t, x: seen.append(x.clone()),
    )
    assert len(seen) == 4
    for x in [*seen, *(c[0] for c in model.calls)]:
        assert torch.equal(x[:, mask], given[:, mask])
    for _, t, _ in model.calls:
        assert t.shape == SHAPE[:2] and t.dtype == torch.float32
        assert bool((t[:, mask] == 0).all()) and bool((t[:, ~mask] > 0).all())
    if solver is not Solver.STOCHASTIC:  # a straight flow is exact only along its own path
        assert (out[:, ~mask] - x0[:, ~mask]).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="must be bool"):
        Condition(given, mask.float())
    with pytest.raises(ValueError, match="does not broadcast"):
        sample(model, noise, 2, condition=Condition(given, torch.ones(4, dtype=torch.bool)))


def test_guidance_one_is_cond_only_with_one_call_per_step() -> None:
    target, noise = randn(2), randn(3)
    plain = PullToTarget(target)
    out = sample(plain, noise, steps=5, guidance_scale=1.0)
    assert plain.calls == ["cond"] * 5
    guided = PullToTarget(target)
    out_g = sample(guided, noise, steps=5, guidance_scale=3.0)
    assert guided.calls == ["cond", "uncond"] * 5 and not torch.equal(out, out_g)


def test_guidance_min_t_guides_only_the_noisy_steps() -> None:
    target, noise = randn(2), randn(3)
    interval = PullToTarget(target)  # unshifted times 1, 0.8, 0.6, 0.4, 0.2: three at >= 0.5
    out = sample(interval, noise, steps=5, guidance_scale=3.0, guidance_min_t=0.5)
    assert interval.calls == ["cond", "uncond"] * 3 + ["cond"] * 2
    always, never = PullToTarget(target), PullToTarget(target)
    guided = sample(always, noise, steps=5, guidance_scale=3.0, guidance_min_t=0.0)
    plain = sample(never, noise, steps=5, guidance_scale=3.0, guidance_min_t=1.0)
    assert always.calls == ["cond", "uncond"] * 5 and never.calls[:3] == ["cond", "uncond", "cond"]
    assert torch.equal(guided, sample(PullToTarget(target), noise, steps=5, guidance_scale=3.0))
    assert not torch.equal(out, guided) and not torch.equal(out, plain)
    # Heun's second evaluation, at the next time, follows the same rule
    heun = PullToTarget(target)
    sample(heun, noise, steps=2, solver="heun", guidance_scale=3.0, guidance_min_t=0.75)
    assert heun.calls == ["cond", "uncond", "cond", "cond"]  # t = 1, then 0.5 (twice)
    for bad in (-0.1, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match=r"guidance_min_t must be a number in \[0, 1\]"):
            sample(PullToTarget(target), noise, steps=2, guidance_min_t=bad)


def test_guidance_scale_must_be_a_finite_number_at_least_zero() -> None:
    target, noise = randn(2), randn(3)
    for bad in (float("nan"), math.inf, -1.0, True, "4"):
        with pytest.raises(ValueError, match=r"guidance_scale must be a finite number >= 0"):
            sample(PullToTarget(target), noise, steps=2, guidance_scale=bad)
    unconditional = PullToTarget(target)
    sample(unconditional, noise, steps=1, guidance_scale=0)  # 0: the unconditional velocity
    assert unconditional.calls == ["cond", "uncond"]
    assert check_guidance_scale(np.float32(4.0)) == 4.0  # numpy scalars are numbers too
    assert check_shift(None) is None and check_shift(3) == 3.0
    for bad in (0.0, -1.0, math.inf, float("nan")):
        with pytest.raises(ValueError, match=r"shift must be a finite number > 0"):
            check_shift(bad)


def test_guidance_formula_with_bound_negative_prompt() -> None:
    def model(x: Tensor, t: Tensor, text: Tensor) -> Tensor:  # text embedding (D,)
        return x * t[..., None] + text

    cond, negative = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.5, -1.0, 0.0, 2.0])
    model_fn = bind_text(model, cond, negative)
    x, t = randn(4), torch.full(SHAPE[:2], 0.5)
    v = guided_velocity(model_fn, x, t, guidance_scale=4.0)
    v_c, v_u = x * 0.5 + cond, x * 0.5 + negative
    assert torch.allclose(v, v_u + 4.0 * (v_c - v_u))
    assert torch.equal(guided_velocity(model_fn, x, t, 1.0), v_c)


def test_a_pair_function_gives_guidance_both_texts_in_one_call() -> None:
    calls = []

    def model(x: Tensor, t: Tensor, text: Tensor) -> Tensor:
        calls.append("one")
        return x * t[..., None] + text

    def pair(x: Tensor, t: Tensor, cond: Tensor, uncond: Tensor) -> tuple[Tensor, Tensor]:
        calls.append("pair")
        both = torch.stack([x, x]) * t[..., None] + torch.stack([cond, uncond])[:, None, None]
        return both[0], both[1]

    cond, negative = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.5, -1.0, 0.0, 2.0])
    x, t = randn(4), torch.full(SHAPE[:2], 0.5)
    v_two = guided_velocity(bind_text(model, cond, negative), x, t, guidance_scale=4.0)
    assert calls == ["one", "one"]
    calls.clear()
    v_one = guided_velocity(bind_text(model, cond, negative, pair=pair), x, t, guidance_scale=4.0)
    assert calls == ["pair"] and torch.equal(v_one, v_two)
    calls.clear()
    guided_velocity(bind_text(model, cond, negative, pair=pair), x, t, guidance_scale=1.0)
    assert calls == ["one"]  # unguided: the prompt alone
    wrong = bind_text(model, cond, negative, pair=lambda x, t, c, u: (x, x[:1]))
    with pytest.raises(ValueError, match="model returned"):
        guided_velocity(wrong, x, t, guidance_scale=4.0)


def test_sampling_is_reproducible_with_a_generator() -> None:
    def model(x: Tensor, t: Tensor, text: TextChoice) -> Tensor:
        return torch.ones_like(x)  # output = noise - 1: depends on the drawn noise

    def run(seed: int) -> Tensor:
        return sample(model, SHAPE, steps=3, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="not both"):
        sample(model, randn(0), 3, generator=torch.Generator())


def test_sdedit_strength_endpoints_and_tail() -> None:
    x0, noise, x_init = randn(0), randn(1), randn(6)
    model = StraightFlow(x0, noise)
    kept = sample(model, noise, steps=4, sde_edit_strength=0.0, x_init=x_init)
    assert torch.equal(kept, x_init) and model.calls == []
    full = sample(StraightFlow(x0, noise), noise, steps=4, solver="heun")
    edit = sample(model, noise, steps=4, solver="heun", sde_edit_strength=1.0, x_init=x_init)
    assert torch.equal(edit, full)
    model.calls.clear()
    sample(model, noise, steps=4, sde_edit_strength=0.6, x_init=x_init)  # times 0.6, 0.5, 0.25, 0
    assert [c[1][0, 0].item() for c in model.calls] == pytest.approx([0.6, 0.5, 0.25])
    assert torch.allclose(model.calls[0][0], interpolate(x_init, noise, 0.6))
    with pytest.raises(ValueError, match="needs x_init"):
        sample(model, noise, 4, sde_edit_strength=0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\], got 1.5"):
        sample(model, noise, 4, sde_edit_strength=1.5, x_init=x_init)


def test_unknown_solver_names_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown solver 'rk4'; valid solvers are \['euler'"):
        sample(StraightFlow(randn(0), randn(1)), randn(1), 2, solver="rk4")
