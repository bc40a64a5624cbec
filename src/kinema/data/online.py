"""Training data decoded and encoded on the fly: video files -> frozen VAE -> latents."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from kinema.data.config import DataConfig
from kinema.data.encode import (
    ClipReadError,
    TextTokenCache,
    encode_frames,
    read_clip_frames,
    text_of,
)
from kinema.data.manifest import ClipRecord
from kinema.data.plan import ClipMeta, ClipPlan, LatentGeometry, Planner
from kinema.data.training import TooManyCorruptVideosError, rank_share
from kinema.diffusion import TrainingSample
from kinema.text import TextEncoder

__all__ = ["MAX_REPLACEMENTS", "OnlineData"]

MAX_REPLACEMENTS = 1000  # draws for one unreadable clip before giving up


def clip_meta(record: ClipRecord) -> ClipMeta:
    return ClipMeta(
        record.width, record.height, record.frames, bool(record.prompt), bool(record.caption)
    )


class OnlineData:
    """``TrainingData`` read from video files each step (see ``kinema.data.training``).

    Each planned clip is decoded (its random window and crop), resized, encoded by the frozen
    ``vae`` (no grad; posterior mean) and its text by ``text_encoder`` (an in-memory cache). An
    unreadable clip is replaced by another of the same shape, drawn from
    ``default_rng([seed, step, index, attempt])``: the same on every rank and every run. Past
    ``config.max_corrupt`` distinct unreadable files, TooManyCorruptVideosError. Samples are
    float32 CPU tensors.
    """

    def __init__(
        self,
        config: DataConfig,
        records: Sequence[ClipRecord],
        vae: torch.nn.Module,
        text_encoder: TextEncoder,
        patch: tuple[int, int, int],
    ) -> None:
        if not records:
            raise ValueError("OnlineData needs at least one record, got an empty manifest")
        self.config, self.records, self.vae = config, list(records), vae
        self.geometry = LatentGeometry.from_vae(vae, patch)
        self.planner = Planner(config, [clip_meta(r) for r in self.records], self.geometry)
        self.text = TextTokenCache(text_encoder)
        self.corrupt: dict[str, str] = {}  # path -> why, of every unreadable file met
        self._clips = 0
        self._skipped = 0

    def plan(self, step: int) -> list[ClipPlan]:
        return self.planner.plan(step)

    def samples(self, step: int, rank: int = 0, world_size: int = 1) -> list[TrainingSample]:
        plans = rank_share(self.plan(step), rank, world_size)
        loaded = [self._load(step, plan) for plan in plans]  # [(plan used, latents)]
        texts = self.text.encode([text_of(self.records[p.source], p.text) for p, _ in loaded])
        self._clips += len(loaded)
        return [
            TrainingSample(latents, text, torch.tensor(plan.condition, dtype=torch.bool))
            for (plan, latents), text in zip(loaded, texts, strict=True)
        ]

    @property
    def stats(self) -> dict[str, int]:
        """This process's counts: clips loaded, loads skipped, distinct unreadable files."""
        return {"clips": self._clips, "skipped": self._skipped, "corrupt_files": len(self.corrupt)}

    def _load(self, step: int, plan: ClipPlan) -> tuple[ClipPlan, torch.Tensor]:
        for attempt in range(MAX_REPLACEMENTS + 1):
            try:
                frames = read_clip_frames(self.records[plan.source], plan)
            except ClipReadError as e:
                self._count_corrupt(e)
                rng = np.random.default_rng([self.config.seed, step, plan.index, attempt])
                plan = self.planner.replacement(plan, rng)
                continue
            return plan, encode_frames(self.vae, frames)  # (C, t, h, w)
        raise TooManyCorruptVideosError(
            len(self.corrupt),
            self.config.max_corrupt,
            list(self.corrupt),
            f"no readable replacement in {MAX_REPLACEMENTS} draws for clip {plan.index} of step "
            f"{step}",
        )

    def _count_corrupt(self, error: ClipReadError) -> None:
        self._skipped += 1
        self.corrupt.setdefault(error.path, error.reason)
        if len(self.corrupt) > self.config.max_corrupt:
            raise TooManyCorruptVideosError(
                len(self.corrupt), self.config.max_corrupt, list(self.corrupt)
            ) from error
