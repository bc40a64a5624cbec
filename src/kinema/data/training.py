"""The training data API the trainer consumes, and what every implementation shares.

```python
class TrainingData(Protocol):
    def samples(self, step: int, rank: int = 0, world_size: int = 1) -> list[TrainingSample]: ...
    @property
    def stats(self) -> dict[str, int]: ...
```

``samples(step, rank, world_size)`` is a pure function of ``(config.seed, step)``: the step's
global list of clips is planned first (``kinema.data.plan``), then rank ``r`` loads the clips
``i`` with ``i % world_size == r``. A rank may get no clip when a step plans fewer clips than
there are ranks. Implementations: ``OnlineData`` (video files + frozen VAE) and ``CachedData``
(shards written by ``kinema cache``); :func:`open_training_data` picks one from a DataConfig.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from kinema.diffusion import TrainingSample

if TYPE_CHECKING:
    import torch

    from kinema.data.config import DataConfig
    from kinema.text import TextEncoder

__all__ = ["TooManyCorruptVideosError", "TrainingData", "open_training_data", "rank_share"]

T = TypeVar("T")


@runtime_checkable
class TrainingData(Protocol):
    def samples(self, step: int, rank: int = 0, world_size: int = 1) -> list[TrainingSample]: ...

    @property
    def stats(self) -> dict[str, int]: ...


class TooManyCorruptVideosError(RuntimeError):
    """More distinct unreadable videos than ``DataConfig.max_corrupt`` allows."""

    def __init__(self, count: int, cap: int, paths: Sequence[str], reason: str = "") -> None:
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        why = f"{reason}; " if reason else ""
        super().__init__(
            f"{why}{count} unreadable videos, more than max_corrupt={cap}: {shown}. Fix or remove "
            "them (`kinema data scan` lists unreadable files) or raise max_corrupt"
        )
        self.count, self.cap, self.paths = count, cap, list(paths)


def rank_share(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Items ``i`` with ``i % world_size == rank``; ValueError for an impossible rank."""
    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(items[rank::world_size])


def open_training_data(
    config: DataConfig,
    vae: torch.nn.Module | None,
    text_encoder: TextEncoder | None,
    patch: tuple[int, int, int],
) -> TrainingData:
    """CachedData when ``config.cache_dir`` is set, else OnlineData over ``config.manifest``."""
    if config.cache_dir is not None:
        from kinema.data.cache import CachedData

        return CachedData(config, config.cache_dir, patch)
    if config.manifest is None:
        raise ValueError("DataConfig needs manifest (decode videos) or cache_dir (a latent cache)")
    if vae is None or text_encoder is None:
        raise ValueError("reading a manifest needs a VAE and a text encoder, got None")
    from kinema.data.manifest import read_manifest
    from kinema.data.online import OnlineData

    return OnlineData(config, read_manifest(config.manifest), vae, text_encoder, patch)
