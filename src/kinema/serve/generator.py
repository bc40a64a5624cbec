"""What the studio asks a model for, and the small protocol a model must follow to be served.

The studio never imports a model: it calls a `Generator`, a callable that takes a validated
`GenerationRequest` and a progress callback and returns frames. `PipelineGenerator` adapts
`kinema.pipeline.Pipeline`; tests serve a fake one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from kinema.modes import Mode, mode_guidance

__all__ = ["GenerationRequest", "GenerationResult", "Generator", "GeneratorInfo", "ProgressFn"]

ProgressFn = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(frozen=True)
class GenerationRequest:
    """One validated request (see `kinema.serve.studio.build_request`)."""

    prompt: str
    mode: Mode = Mode.T2V
    negative_prompt: str = ""
    width: int = 64
    height: int = 64
    num_frames: int = 33  # the output (t2v, i2v, edit, long, loop), frames added (extend), or
    # the transition (connect); 1 for t2i
    steps: int = 20
    guidance: float = 4.0
    seed: int = 0  # resolved: never -1 here
    image: Path | None = None  # i2v, long: the first frame
    last_image: Path | None = None  # i2v: the last frame
    video: Path | None = None  # extend, edit, connect (the first video)
    video2: Path | None = None  # connect: the video to lead into
    strength: float | None = None  # edit: how far down the noise schedule to start (0, 1]


@dataclass
class GenerationResult:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    seed: int


@dataclass(frozen=True)
class GeneratorInfo:
    """What the studio shows and checks for a model."""

    name: str  # shown on the page, e.g. the model folder's name
    fps: float
    size_multiple: int  # width and height are multiples of this
    min_size: int
    max_size: int
    max_frames: int  # per window; `long` chains windows
    default_width: int = 64
    default_height: int = 64
    default_seconds: float = 4.0
    default_steps: int = 20
    default_guidance: float = 4.0
    default_given_guidance: float | None = None  # i2v, extend, connect, loop, edit; None: the above

    def guidance_for(self, mode: Mode) -> float:
        """The slider's default for a mode."""
        return mode_guidance(mode, self.default_guidance, self.default_given_guidance)


class Generator(Protocol):
    info: GeneratorInfo

    def __call__(self, request: GenerationRequest, progress: ProgressFn) -> GenerationResult: ...
