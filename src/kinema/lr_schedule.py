"""The learning-rate schedule of every Kinema trainer (the DiT and the VAE), one pure function.

Linear warmup to the peak, then a cosine decay to ``peak * min_lr_ratio`` at the last step. With
``decay_steps`` the schedule is warmup-stable-decay (WSD, as torchtitan and MiniCPM use): the peak
is held until the last ``decay_steps`` steps and only those decay. A WSD run can be continued
across sessions at a constant rate, and any of its checkpoints can be finished with a short decay
by resuming a copy of the run with ``steps`` set to that checkpoint's step plus ``decay_steps``.
"""

from __future__ import annotations

import math

__all__ = ["learning_rate"]


def learning_rate(
    step: int,
    total_steps: int,
    peak: float,
    warmup_steps: int,
    min_lr_ratio: float,
    decay_steps: int | None = None,
) -> float:
    """The rate of optimizer step ``step`` (0-based) of a run of ``total_steps`` steps.

    ``decay_steps=None`` decays over the whole run after the warmup (plain warmup-cosine); an
    integer holds ``peak`` until step ``total_steps - decay_steps``, then decays over the rest.
    """
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    start = warmup_steps if decay_steps is None else max(warmup_steps, total_steps - decay_steps)
    progress = (step - start) / max(1, total_steps - start)
    cosine = 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return peak * (min_lr_ratio + (1 - min_lr_ratio) * cosine)
