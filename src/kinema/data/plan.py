"""The plan of a training step: which clips, at what size and length, with which text and mask.

A step's plan is a pure function of ``(config.seed, step)`` and the catalogue of clips: every
choice comes from ``numpy.random.default_rng([seed, step])``, drawn in a fixed order per clip, and
clips are added until the step's global token budget is full. Ranks then load only their share
(clip ``i`` goes to rank ``i % world_size``), so resuming at step ``s`` and running on any number
of ranks give the same global batch, with no sampler state to save.

Per clip, in this order: the catalogue item (uniform), whether a video is used as one frame
(``image_probability``), three uniforms for the time offset and crop position, two for caption
dropout and caption choice, then the condition mask. The draws are the same whether the clip is
read from a video (a random window) or from a latent cache (the first frames, the whole stored
frame), so both give the same plan for the same catalogue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from kinema.data.conditions import sample_condition
from kinema.data.config import DataConfig
from kinema.data.sizing import choose_frames, choose_size, crop_box, max_latent_frames

__all__ = [
    "MAX_MISSES",
    "ClipMeta",
    "ClipPlan",
    "LatentGeometry",
    "Planner",
    "TextChoice",
    "choose_text",
]

Triple = tuple[int, int, int]

MAX_MISSES = 8  # clips drawn that did not fit the remaining budget before a step's plan ends


@dataclass(frozen=True)
class LatentGeometry:
    """How pixels become DiT tokens: the VAE's compression and the DiT's patch."""

    space_compression: int  # pixels per latent pixel along H and W
    time_compression: int  # frames per latent frame after the first (causal VAE)
    patch: Triple  # DiT patch (pt, ph, pw) in latent frames and pixels

    def __post_init__(self) -> None:
        values = (self.space_compression, self.time_compression, *self.patch)
        if len(self.patch) != 3 or any(not isinstance(v, int) or v < 1 for v in values):
            raise ValueError(
                f"compressions and patch must be positive ints, got space_compression="
                f"{self.space_compression}, time_compression={self.time_compression}, "
                f"patch={self.patch!r}"
            )

    @classmethod
    def from_vae(cls, vae: object, patch: Sequence[int]) -> LatentGeometry:
        config = vae.config  # type: ignore[attr-defined]
        return cls(config.space_compression, config.time_compression, tuple(patch))  # type: ignore[arg-type]

    @property
    def multiple(self) -> int:
        """Frame sides are multiples of this: a whole number of patches in latent space."""
        sc, (_, ph, pw) = self.space_compression, self.patch
        return math.lcm(sc * ph, sc * pw)

    def latent_frames(self, frames: int) -> int:
        return 1 + -(-(frames - 1) // self.time_compression)

    def tokens(self, width: int, height: int, frames: int) -> int:
        """DiT tokens of a clip: (t / pt) * (h / ph) * (w / pw) in latent units."""
        pt, ph, pw = self.patch
        sc = self.space_compression
        return (self.latent_frames(frames) // pt) * (height // sc // ph) * (width // sc // pw)


@dataclass(frozen=True)
class ClipMeta:
    """What the planner needs to know of a catalogue item."""

    width: int  # source pixels
    height: int
    frames: int  # source frames (1: an image)
    has_prompt: bool  # a short text exists
    has_caption: bool  # a detailed text exists


class TextChoice(StrEnum):
    PROMPT = "prompt"  # the short text
    CAPTION = "caption"  # the detailed text
    EMPTY = "empty"  # no text: dropped for guidance, or the clip has none


def choose_text(
    has_prompt: bool, has_caption: bool, drop_u: float, detail_u: float, config: DataConfig
) -> TextChoice:
    """Dropout first, then the detailed caption with its probability; fall back to what exists."""
    if drop_u < config.caption_dropout or not (has_prompt or has_caption):
        return TextChoice.EMPTY
    detailed = detail_u < config.detailed_caption_probability
    if (detailed and has_caption) or not has_prompt:
        return TextChoice.CAPTION
    return TextChoice.PROMPT


@dataclass(frozen=True)
class ClipPlan:
    """One clip of a step, fully decided before anything is decoded."""

    index: int  # position in the step's global list; loaded by rank index % world_size
    source: int  # index of the record (OnlineData) or cache entry (CachedData)
    width: int  # output pixels (a multiple of LatentGeometry.multiple)
    height: int
    frames: int  # output frames, 1 + k * time_compression (1: an image)
    start: int  # first source frame
    crop: tuple[int, int, int, int]  # (left, top, width, height) of the source region
    text: TextChoice  # which text the clip trains with
    condition: tuple[bool, ...]  # per latent frame: given clean
    tokens: int  # DiT tokens of the clip

    @property
    def latent_frames(self) -> int:
        return len(self.condition)


class Planner:
    """Plans steps over a fixed catalogue; ``prefix_only`` for latent caches (first frames,
    whole stored frame, which must already be the planned size)."""

    def __init__(
        self,
        config: DataConfig,
        catalogue: Sequence[ClipMeta],
        geometry: LatentGeometry,
        prefix_only: bool = False,
    ) -> None:
        self.config, self.catalogue, self.geometry = config, list(catalogue), geometry
        self.prefix_only = prefix_only
        pt = geometry.patch[0]
        tc = geometry.time_compression
        self.images_allowed = pt == 1  # a 1-frame clip has 1 latent frame: only with pt == 1
        self.eligible = np.array(
            [
                i
                for i, m in enumerate(self.catalogue)
                if max_latent_frames(m.frames, config.max_frames, tc, pt) > 0
            ],
            dtype=np.int64,
        )  # (n,) catalogue items that make at least one clip
        if len(self.eligible) == 0:
            raise ValueError(
                f"no clip of the {len(self.catalogue)} in the catalogue is long enough for "
                f"patch {geometry.patch} with max_frames={config.max_frames}"
            )
        self.sizes = [
            choose_size(m.width, m.height, config.pixel_budget, geometry.multiple)
            for m in self.catalogue
        ]
        if prefix_only:
            self._check_stored_sizes()
        self._check_token_budget()
        self.min_tokens = min(
            geometry.tokens(*self.sizes[i], 1 if pt == 1 else 1 + (pt - 1) * tc)
            for i in self.eligible
        )
        self.frames = np.array([m.frames for m in self.catalogue], dtype=np.int64)

    def _check_stored_sizes(self) -> None:
        for i, (m, size) in enumerate(zip(self.catalogue, self.sizes, strict=True)):
            if size != (m.width, m.height):
                raise ValueError(
                    f"cache entry {i} is stored at {m.width}x{m.height}, but pixel_budget="
                    f"{self.config.pixel_budget} with multiple {self.geometry.multiple} asks for "
                    f"{size[0]}x{size[1]}; use pixel_budget >= {m.width * m.height} or rebuild "
                    "the cache at that budget"
                )

    def _check_token_budget(self) -> None:
        longest = {
            i: choose_frames(
                self.catalogue[i].frames,
                self.config.max_frames,
                self.geometry.time_compression,
                self.geometry.patch[0],
            )
            for i in self.eligible
        }
        tokens = {i: self.geometry.tokens(*self.sizes[i], f) for i, f in longest.items()}
        worst = max(tokens, key=lambda i: tokens[i])
        if tokens[worst] > self.config.token_budget:
            w, h = self.sizes[worst]
            raise ValueError(
                f"token_budget={self.config.token_budget} is smaller than the largest clip "
                f"(item {worst}: {w}x{h}, {longest[worst]} frames = {tokens[worst]} tokens); "
                f"use token_budget >= {tokens[worst]} or lower pixel_budget or max_frames"
            )

    def plan(self, step: int) -> list[ClipPlan]:
        """The global list of clips of ``step``, filling at most ``config.token_budget`` tokens."""
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        rng = np.random.default_rng([self.config.seed, int(step)])
        budget = self.config.token_budget
        plans: list[ClipPlan] = []
        used = misses = 0
        while misses < MAX_MISSES and budget - used >= self.min_tokens:
            clip = self.draw_clip(rng, len(plans))
            if used + clip.tokens > budget:
                misses += 1
                continue
            plans.append(clip)
            used += clip.tokens
        return plans

    def draw_clip(self, rng: np.random.Generator, index: int) -> ClipPlan:
        """One clip drawn from ``rng`` (the fixed draw order is in the module docstring)."""
        source = int(self.eligible[rng.integers(len(self.eligible))])
        meta = self.catalogue[source]
        image_u = rng.random()
        as_image = meta.frames == 1 or (
            self.images_allowed and image_u < self.config.image_probability
        )
        tc, pt = self.geometry.time_compression, self.geometry.patch[0]
        frames = 1 if as_image else choose_frames(meta.frames, self.config.max_frames, tc, pt)
        return self._shape(rng, index, source, self.sizes[source], frames, text=None)

    def replacement(self, plan: ClipPlan, rng: np.random.Generator) -> ClipPlan:
        """The same clip shape (size, frames, mask, kind of text) from another source drawn with
        ``rng``: what a rank loads instead of an unreadable video."""
        candidates = np.flatnonzero(self.frames >= plan.frames)  # (n,) long enough sources
        source = int(candidates[rng.integers(len(candidates))])
        rng.random()  # the image draw, kept so the window draws line up with draw_clip
        size = (plan.width, plan.height)
        clip = self._shape(rng, plan.index, source, size, plan.frames, text=plan.text)
        return replace(clip, condition=plan.condition, tokens=plan.tokens)

    def _shape(
        self,
        rng: np.random.Generator,
        index: int,
        source: int,
        size: tuple[int, int],
        frames: int,
        text: TextChoice | None,
    ) -> ClipPlan:
        meta = self.catalogue[source]
        start_u, x_u, y_u = rng.random(3)
        drop_u, detail_u = rng.random(2)
        width, height = size
        if self.prefix_only:
            start, crop = 0, (0, 0, meta.width, meta.height)
        else:
            start = min(int(start_u * (meta.frames - frames + 1)), meta.frames - frames)
            crop = crop_box(meta.width, meta.height, width, height, x_u, y_u)
        if text is None:
            text = choose_text(meta.has_prompt, meta.has_caption, drop_u, detail_u, self.config)
        elif text is not TextChoice.EMPTY:  # a replacement keeps the kind of text where it can
            if not (meta.has_prompt or meta.has_caption):
                text = TextChoice.EMPTY
            elif text is TextChoice.CAPTION and not meta.has_caption:
                text = TextChoice.PROMPT
            elif text is TextChoice.PROMPT and not meta.has_prompt:
                text = TextChoice.CAPTION
        t = self.geometry.latent_frames(frames)
        condition = sample_condition(rng, t, self.config.condition_weights)
        return ClipPlan(
            index=index,
            source=source,
            width=width,
            height=height,
            frames=frames,
            start=start,
            crop=crop,
            text=text,
            condition=tuple(bool(c) for c in condition.tolist()),
            tokens=self.geometry.tokens(width, height, frames),
        )
