"""Ending a warmup-stable-decay run by a deadline: how many steps the time left affords.

A run with ``deadline_s`` (and ``optim.decay_steps``) holds its peak rate while the time left
affords more steps than the decay, and begins the decay when it no longer does, so that it ends
by the deadline at the rate it has measured: the most steps this machine can take in the time,
at most ``steps``. Which step the decay began at is kept in the checkpoints; the run is then the
same as one started with that total (`--set steps=N` reproduces it without a deadline).

    planned_total(step=4000, max_steps=10750, decay_steps=500, spent_s=4400.0,
                  seconds_per_step=1.1, deadline_s=9000.0)   # 8181: 4,181 more steps fit

`kinema train recipe --hours H` gives its transformer such a deadline: the hours less what the
stages before it took, less the expert's steps and the exports after it.
"""

from __future__ import annotations

import math

__all__ = ["planned_total", "step_rate"]


def planned_total(
    step: int,
    max_steps: int,
    decay_steps: int,
    spent_s: float,
    seconds_per_step: float,
    deadline_s: float,
    reserve_steps: int = 0,
) -> int:
    """The run's total steps when `step` steps are done and `spent_s` seconds spent.

    The most, up to `max_steps`, that end by `deadline_s` at `seconds_per_step`, leaving
    `reserve_steps` steps' worth of time after the run; never fewer than ``step + decay_steps``
    (a decay once due is run whole, even past the deadline) nor than `step`.
    """
    if seconds_per_step <= 0 or not math.isfinite(seconds_per_step):
        raise ValueError(f"seconds_per_step must be positive and finite, got {seconds_per_step}")
    affordable = math.floor((deadline_s - spent_s) / seconds_per_step) - reserve_steps
    return max(step + decay_steps, min(max_steps, step + affordable), step)


def step_rate(times: list[tuple[int, float]], skip: int = 5, least: int = 20) -> float | None:
    """Seconds a step from ``(step, clock)`` pairs of this process, one per step taken.

    The first `skip` steps (warm-up: first calls, allocator growth) are left out; None until
    `least` steps after them were timed. Checkpoints and samples fall between steps and count.
    """
    if len(times) < skip + least + 1:
        return None
    (s0, t0), (s1, t1) = times[skip], times[-1]
    return (t1 - t0) / (s1 - s0)
