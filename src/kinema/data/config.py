"""The data configuration of a training run: one dataclass, a comment per field."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kinema.data.conditions import (
    DEFAULT_CONDITION_WEIGHTS,
    ConditionKind,
    check_condition_weights,
)

__all__ = ["DataConfig"]


def _default_weights() -> dict[ConditionKind, float]:
    return dict(DEFAULT_CONDITION_WEIGHTS)


@dataclass
class DataConfig:
    manifest: str | None = None  # manifest.jsonl of the clips (OnlineData); None with a cache
    cache_dir: str | None = None  # a folder written by `kinema cache` (CachedData), or None
    pixel_budget: int = 64 * 64  # most pixels per frame (width * height); aspect ratio is kept
    max_frames: int = 33  # most video frames per clip (cut to 1 + k * time_compression)
    token_budget: int = 4096  # DiT tokens per optimizer step, summed over all ranks
    image_probability: float = 0.1  # chance a video clip is used as one still frame (an image)
    detailed_caption_probability: float = 0.5  # chance of the detailed caption over the prompt
    caption_dropout: float = 0.1  # chance of empty text (learns the unconditional for CFG)
    # relative weights of the condition masks (see kinema.data.conditions)
    condition_weights: dict[ConditionKind, float] = field(default_factory=_default_weights)
    max_corrupt: int = 100  # distinct unreadable videos tolerated before training stops
    seed: int = 0  # with the step number, decides every random choice of the data

    def __post_init__(self) -> None:
        for name in ("pixel_budget", "max_frames", "token_budget"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DataConfig.{name} must be a positive int, got {value!r}")
        for name in ("max_corrupt", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"DataConfig.{name} must be an int >= 0, got {value!r}")
        for name in ("image_probability", "detailed_caption_probability", "caption_dropout"):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise ValueError(
                    f"DataConfig.{name} must be a probability in [0, 1], got {value!r}"
                )
        self.condition_weights = check_condition_weights(self.condition_weights)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (condition kinds as their string values)."""
        d = asdict(self)
        d["condition_weights"] = {k.value: v for k, v in self.condition_weights.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DataConfig fields {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**d)
