"""Kinema's training data: manifests, native-size clip plans, condition masks, latent caches.

The trainer consumes :class:`TrainingData` (``samples(step, rank, world_size)`` and ``stats``),
implemented by :class:`OnlineData` (decode + encode each step) and :class:`CachedData` (read
``kinema cache`` shards). See docs/data.md.
"""

from kinema.data.cache import (
    CachedData,
    CacheReport,
    CacheSettings,
    IncompleteCacheError,
    build_cache,
)
from kinema.data.conditions import DEFAULT_CONDITION_WEIGHTS, ConditionKind, sample_condition
from kinema.data.config import DataConfig
from kinema.data.manifest import ClipRecord, ScanReport, read_manifest, scan_folder, write_manifest
from kinema.data.online import OnlineData
from kinema.data.plan import ClipPlan, LatentGeometry, Planner, TextChoice
from kinema.data.sizing import choose_frames, choose_size, crop_box
from kinema.data.training import (
    TooManyCorruptVideosError,
    TrainingData,
    open_training_data,
)

__all__ = [
    "DEFAULT_CONDITION_WEIGHTS",
    "CacheReport",
    "CacheSettings",
    "CachedData",
    "ClipPlan",
    "ClipRecord",
    "ConditionKind",
    "DataConfig",
    "IncompleteCacheError",
    "LatentGeometry",
    "OnlineData",
    "Planner",
    "ScanReport",
    "TextChoice",
    "TooManyCorruptVideosError",
    "TrainingData",
    "build_cache",
    "choose_frames",
    "choose_size",
    "crop_box",
    "open_training_data",
    "read_manifest",
    "sample_condition",
    "scan_folder",
    "write_manifest",
]
