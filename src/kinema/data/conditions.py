"""Random condition masks: which latent frames of a training clip are given clean.

One DiT checkpoint learns every generation mode because training draws, per clip, a mask of
latent frames that are given clean (timestep 0, no loss) while the rest are generated
(see `kinema.diffusion`). The kinds, for a clip of ``t`` latent frames:

``none``           nothing given: text to video (and text to image for 1-frame clips)
``first_frame``    latent frame 0: image to video
``first_clip``     the first k (1 <= k < t): extend forward
``last_clip``      the last k (1 <= k < t): extend backward
``first_last``     the first a and the last b (a, b >= 1, a + b < t): connect two clips
``random_frames``  k random frames (1 <= k < t): in-betweening, frame-level conditioning

A mask never gives every frame (nothing would be left to learn); a kind impossible for a clip's
length (``first_last`` needs 3 latent frames, all but ``none`` need 2) is not drawn for it: the
weights of the possible kinds are renormalized.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DEFAULT_CONDITION_WEIGHTS",
    "ConditionKind",
    "check_condition_weights",
    "condition_mask",
    "sample_condition",
]


class ConditionKind(StrEnum):
    NONE = "none"
    FIRST_FRAME = "first_frame"
    FIRST_CLIP = "first_clip"
    LAST_CLIP = "last_clip"
    FIRST_LAST = "first_last"
    RANDOM_FRAMES = "random_frames"


# Text to video dominates; every conditioned mode keeps a share so one checkpoint serves them all.
DEFAULT_CONDITION_WEIGHTS: dict[ConditionKind, float] = {
    ConditionKind.NONE: 0.5,
    ConditionKind.FIRST_FRAME: 0.15,
    ConditionKind.FIRST_CLIP: 0.1,
    ConditionKind.LAST_CLIP: 0.1,
    ConditionKind.FIRST_LAST: 0.1,
    ConditionKind.RANDOM_FRAMES: 0.05,
}

# Fewest latent frames each kind needs (a mask must leave at least one frame to generate).
_MIN_LATENT_FRAMES = {
    ConditionKind.NONE: 1,
    ConditionKind.FIRST_FRAME: 2,
    ConditionKind.FIRST_CLIP: 2,
    ConditionKind.LAST_CLIP: 2,
    ConditionKind.FIRST_LAST: 3,
    ConditionKind.RANDOM_FRAMES: 2,
}


def check_condition_weights(weights: Mapping[object, float]) -> dict[ConditionKind, float]:
    """Weights keyed by ConditionKind (or its string value), finite, >= 0, with a positive sum."""
    valid = ", ".join(k.value for k in ConditionKind)
    checked: dict[ConditionKind, float] = {}
    for key, value in weights.items():
        try:
            kind = ConditionKind(key)
        except ValueError:
            raise ValueError(f"unknown condition kind {key!r}; valid: {valid}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"condition weight of {kind.value} must be a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"condition weight of {kind.value} must be finite and >= 0, got {value}"
            )
        checked[kind] = float(value)
    if sum(checked.values()) <= 0:
        raise ValueError(f"condition weights need a positive sum, got {dict(weights)!r}")
    return checked


def condition_mask(rng: np.random.Generator, kind: ConditionKind, num_latent_frames: int) -> Tensor:
    """The ``(t,)`` bool mask of one kind; its random block lengths and frames come from rng."""
    t = num_latent_frames
    if t < _MIN_LATENT_FRAMES[kind]:
        raise ValueError(
            f"condition {kind.value} needs at least {_MIN_LATENT_FRAMES[kind]} latent frames, "
            f"got {t}"
        )
    mask = torch.zeros(t, dtype=torch.bool)
    if kind is ConditionKind.FIRST_FRAME:
        mask[0] = True
    elif kind is ConditionKind.FIRST_CLIP:
        mask[: int(rng.integers(1, t))] = True
    elif kind is ConditionKind.LAST_CLIP:
        mask[t - int(rng.integers(1, t)) :] = True
    elif kind is ConditionKind.FIRST_LAST:
        given = int(rng.integers(2, t))  # a + b, in 2..t-1
        first = int(rng.integers(1, given))  # a, in 1..given-1
        mask[:first] = True
        mask[t - (given - first) :] = True
    elif kind is ConditionKind.RANDOM_FRAMES:
        count = int(rng.integers(1, t))
        mask[torch.from_numpy(rng.choice(t, size=count, replace=False))] = True
    return mask


def sample_condition(
    rng: np.random.Generator,
    num_latent_frames: int,
    weights: Mapping[ConditionKind, float] = DEFAULT_CONDITION_WEIGHTS,
) -> Tensor:
    """A random ``(t,)`` bool mask of latent frames given clean, never all of them.

    The kind is drawn with probability proportional to ``weights`` among the kinds possible for
    ``t`` latent frames; a 1-latent-frame clip (an image) always gets ``none``.
    """
    if isinstance(num_latent_frames, bool) or not isinstance(num_latent_frames, int | np.integer):
        raise ValueError(f"num_latent_frames must be an int, got {num_latent_frames!r}")
    if num_latent_frames < 1:
        raise ValueError(f"num_latent_frames must be >= 1, got {num_latent_frames}")
    t = int(num_latent_frames)
    checked = check_condition_weights(weights)
    kinds = [k for k in ConditionKind if checked.get(k, 0.0) > 0 and t >= _MIN_LATENT_FRAMES[k]]
    if not kinds:
        return torch.zeros(t, dtype=torch.bool)
    p = np.array([checked[k] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    return condition_mask(rng, kind, t)
