"""`kinema.pipeline.Pipeline` as a studio `Generator`."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from kinema.modes import GIVEN_FRAME_MODES
from kinema.serve.generator import (
    GenerationRequest,
    GenerationResult,
    GeneratorInfo,
    ProgressFn,
)
from kinema.video import read_video, resize_and_crop

__all__ = ["PipelineGenerator", "read_video_at_size"]


def read_video_at_size(
    path: str | os.PathLike[str], width: int, height: int, fps: float
) -> np.ndarray:
    """`read_video(path, fps=fps)` resized/center-cropped to (height, width): the same frames as
    on the command line, decoded in one pass and shrunk frame by frame so that a large upload
    never sits in memory at full resolution. (T, height, width, 3)."""
    return read_video(path, fps=fps, transform=lambda f: resize_and_crop(f, height, width)).frames


class PipelineGenerator:
    """Serves a Pipeline: its model's fps, size multiples and limits become the studio's."""

    def __init__(self, pipe, name: str | None = None) -> None:
        self.pipe = pipe
        index = pipe.index
        mh, mw = pipe.size_multiples
        folder = Path(pipe.model_dir).name if pipe.model_dir is not None else "model"
        defaults = index.defaults
        self.info = GeneratorInfo(
            name=name or folder,
            fps=float(defaults.fps),
            size_multiple=math.lcm(mh, mw),
            min_size=index.limits.min_size,
            max_size=index.limits.max_size,
            max_frames=index.limits.max_frames,
            default_width=defaults.width,
            default_height=defaults.height,
            default_seconds=(defaults.num_frames - 1) / defaults.fps,
            default_steps=defaults.num_inference_steps,
            default_guidance=defaults.guidance_scale,
            default_given_guidance=defaults.given_guidance_scale,
        )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str] | None = None, **kwargs):
        from kinema.pipeline import Pipeline

        return cls(Pipeline.from_pretrained(directory, **kwargs))

    def _given_guidance(self, request: GenerationRequest) -> float | None:
        """The slider is the guidance of the mode's default (docs/studio.md): in the modes that
        join given frames it sets every window (None), elsewhere the windows made from text, and
        the windows that continue frames (`long`'s chained ones) keep the model's given
        guidance, as on the command line."""
        if request.mode in GIVEN_FRAME_MODES:
            return None
        return self.info.default_given_guidance

    def __call__(self, request: GenerationRequest, progress: ProgressFn) -> GenerationResult:
        w, h, fps = request.width, request.height, self.info.fps
        videos = {
            name: read_video_at_size(path, w, h, fps) if path is not None else None
            for name, path in (("video", request.video), ("video2", request.video2))
        }
        out = self.pipe(
            request.prompt,
            request.negative_prompt or None,  # empty: the model's default negative prompt
            mode=request.mode,
            image=request.image,
            last_image=request.last_image,
            strength=request.strength,
            width=w,
            height=h,
            num_frames=request.num_frames,
            fps=fps,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            given_guidance_scale=self._given_guidance(request),
            seed=request.seed,
            callback=lambda step: progress(step.step, step.total_steps),
            **videos,
        )
        return GenerationResult(frames=out.frames, fps=out.fps, seed=out.seed)
