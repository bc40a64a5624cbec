"""Synthetic training data: random latent clips and text behind kinema.data's TrainingData API.

For tests, benchmarks and smoke runs that need no videos, VAE or text encoder. There are
`classes` fixed (text, latent pattern) pairs; clip `i` of step `s` picks one with
``default_rng([seed, s, i])`` and adds noise, so the DiT has something to learn (its loss falls)
and `samples(step, rank, world_size)` is a pure function of (seed, step) like the real sources:
rank `r` gets the clips `i` with ``i % world_size == r``, and the ranks together see exactly the
one-process batch. A clip drawn as "corrupt" (`corrupt_probability`) is replaced by a fresh draw
and counted in ``stats["skipped"]``, as the video sources count unreadable files.
"""

from __future__ import annotations

import numpy as np
import torch

from kinema.diffusion import TrainingSample
from kinema.train.config import SyntheticDataConfig

__all__ = ["SyntheticData"]

MAX_REDRAWS = 100  # draws for one "corrupt" clip before giving up


class SyntheticData:
    """`TrainingData` of random latents (C, t, h, w) and text tokens (L, text_dim)."""

    def __init__(
        self,
        config: SyntheticDataConfig,
        latent_channels: int,
        text_dim: int,
        seed: int = 0,
        patch: tuple[int, int, int] = (1, 1, 1),
    ) -> None:
        for t in config.latent_frames:
            if t < 1 or t % patch[0]:
                raise ValueError(f"latent_frames {t} is not a positive multiple of patch {patch}")
        for h, w in config.latent_sizes:
            if h < 1 or w < 1 or h % patch[1] or w % patch[2]:
                raise ValueError(
                    f"latent size {(h, w)} is not a positive multiple of patch {patch[1:]}"
                )
        for name in ("batch_size", "classes", "text_length"):
            if getattr(config, name) < 1:
                raise ValueError(f"synthetic {name} must be >= 1, got {getattr(config, name)}")
        self.config, self.seed = config, seed
        t_max = max(config.latent_frames)
        h_max = max(h for h, _ in config.latent_sizes)
        w_max = max(w for _, w in config.latent_sizes)
        g = torch.Generator().manual_seed(seed)
        k = config.classes
        self.patterns = torch.randn(k, latent_channels, t_max, h_max, w_max, generator=g)
        self.texts = torch.randn(k, config.text_length, text_dim, generator=g)
        self._skipped = 0

    @property
    def stats(self) -> dict[str, int]:
        return {"skipped": self._skipped}

    def samples(self, step: int, rank: int = 0, world_size: int = 1) -> list[TrainingSample]:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world={world_size}")
        return [self.clip(step, i) for i in range(rank, self.config.batch_size, world_size)]

    def clip(self, step: int, index: int) -> TrainingSample:
        """Clip `index` of step `step`'s global batch."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, step, index])
        for _ in range(MAX_REDRAWS):
            if rng.random() >= cfg.corrupt_probability:
                break
            self._skipped += 1
        else:
            raise RuntimeError(
                f"{MAX_REDRAWS} corrupt draws in a row: corrupt_probability too high"
            )
        k = int(rng.integers(cfg.classes))
        t = int(rng.choice(cfg.latent_frames))
        h, w = cfg.latent_sizes[int(rng.integers(len(cfg.latent_sizes)))]
        noise = torch.from_numpy(rng.standard_normal((self.patterns.shape[1], t, h, w)))
        latents = self.patterns[k, :, :t, :h, :w] + cfg.noise * noise.float()  # (C, t, h, w)
        text = self.texts[k] if rng.random() >= cfg.caption_dropout else self.texts[k][:0]
        condition = None
        if t > 1 and rng.random() < cfg.condition_probability:
            condition = torch.zeros(t, dtype=torch.bool)
            condition[0] = True  # image to video: the first latent frame is given clean
        return TrainingSample(latents.contiguous(), text.clone(), condition)
