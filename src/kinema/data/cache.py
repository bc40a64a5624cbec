"""A latent cache: VAE latents and text tokens computed once, read by training as ``CachedData``.

Layout of ``CACHE_DIR``::

    cache.json                       format, settings, VAE and text-encoder fingerprints, counts
    shards/shard-000000.safetensors  tensors "<record>.latents" (C, t, h, w), "<record>.prompt" and
                                     "<record>.caption" (L, D) for records [k*S, (k+1)*S)
    shards/shard-000000.jsonl        one line per record of the shard: its entry, or its error;
                                     written after the shard, so it marks the shard finished
    index.jsonl                      every shard's lines in order, once every shard is finished

Each record is encoded once: its first ``1 + k * tc <= max_frames`` frames, the largest centred
region of the target aspect ratio, resized to a fixed ``size`` or to its native aspect ratio
within ``pixel_budget`` (the same rule as OnlineData). Both texts are stored, so the choice
between prompt and caption and the dropout stay per step.

Ranks split the shards round-robin (rank r writes shards r, r + W, ...; every shard is written
whole by one rank), so no two processes write the same file, and a rerun skips finished shards
whatever the world size. Shards and their lines are written atomically. Because the VAE is
causal, the first ``t'`` latent frames of a stored clip are exactly the latents of its first
``1 + (t' - 1) * tc`` frames: CachedData shortens clips (and takes images) without re-encoding.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from kinema.atomic import atomic_write, atomic_write_text
from kinema.data.config import DataConfig
from kinema.data.encode import ClipReadError, TextTokenCache, encode_frames, read_clip_frames
from kinema.data.manifest import ClipRecord
from kinema.data.plan import ClipMeta, ClipPlan, LatentGeometry, Planner, TextChoice
from kinema.data.sizing import choose_frames, choose_size, crop_box
from kinema.data.training import rank_share
from kinema.diffusion import TrainingSample
from kinema.text import TextEncoder

__all__ = [
    "CACHE_FORMAT",
    "CacheReport",
    "CacheSettings",
    "CachedData",
    "IncompleteCacheError",
    "build_cache",
    "cache_plan",
    "read_cache_index",
    "read_cache_meta",
    "vae_fingerprint",
]

CACHE_FORMAT = "kinema.latent-cache"
CACHE_VERSION = 1
META_NAME = "cache.json"
INDEX_NAME = "index.jsonl"
SHARD_DIR = "shards"

Triple = tuple[int, int, int]


class IncompleteCacheError(ValueError):
    """A cache whose shards are not all written yet."""


@dataclass(frozen=True)
class CacheSettings:
    size: tuple[int, int] | None = None  # fixed (width, height), or None: native aspect ratio
    pixel_budget: int = 64 * 64  # most pixels per frame when size is None
    max_frames: int = 33  # frames from each clip's start, cut to 1 + k * time_compression
    patch: Triple = (1, 2, 2)  # the DiT patch: frame sides are multiples of sc * patch
    shard_size: int = 64  # records per shard (a unit of work and of resuming)
    bf16: bool = False  # bf16 autocast: faster where native (kinema.precision), else far slower

    def __post_init__(self) -> None:
        for name in ("pixel_budget", "max_frames", "shard_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CacheSettings.{name} must be a positive int, got {value!r}")
        if self.size is not None and (
            len(self.size) != 2 or any(not isinstance(s, int) or s < 1 for s in self.size)
        ):
            raise ValueError(
                f"CacheSettings.size must be (width, height) or None, got {self.size!r}"
            )
        object.__setattr__(self, "patch", tuple(self.patch))
        object.__setattr__(self, "size", None if self.size is None else tuple(self.size))

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": None if self.size is None else list(self.size),
            "pixel_budget": self.pixel_budget,
            "max_frames": self.max_frames,
            "patch": list(self.patch),
            "shard_size": self.shard_size,
            "bf16": self.bf16,
        }


@dataclass
class CacheReport:
    """What one :func:`build_cache` call did."""

    cache_dir: Path
    shards: int  # shards of the whole cache
    assigned: int  # shards of this rank
    written: int  # shards this call wrote
    already_done: int  # shards of this rank found finished (resumed)
    clips: int  # records this call encoded
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why) unreadable
    index: Path | None = None  # index.jsonl, once every shard of the cache is finished

    def summary(self) -> str:
        lines = [
            f"{self.assigned} of {self.shards} shards are this rank's: {self.written} written, "
            f"{self.already_done} already done; {self.clips} clips encoded, "
            f"{len(self.skipped)} unreadable skipped"
        ]
        lines += [f"  skipped {path}: {why}" for path, why in self.skipped]
        lines.append(
            f"index: {self.index}" if self.index else "index: not yet (other shards unfinished)"
        )
        return "\n".join(lines)


def vae_fingerprint(vae: torch.nn.Module, encoder_only: bool = False) -> str:
    """SHA-256 of a VAE's config and every tensor of its state (weights and latent stats); with
    `encoder_only`, of what decides its latents: the decoder's weights are left out."""
    digest = hashlib.sha256(json.dumps(vae.config.to_dict(), sort_keys=True).encode())  # type: ignore[attr-defined]
    for name, tensor in sorted(vae.state_dict().items()):
        if encoder_only and name.startswith("decoder."):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _records_fingerprint(records: Sequence[ClipRecord]) -> str:
    lines = (json.dumps(r.to_json(), sort_keys=True, ensure_ascii=False) for r in records)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _shard_path(cache_dir: Path, shard: int, suffix: str) -> Path:
    return cache_dir / SHARD_DIR / f"shard-{shard:06d}{suffix}"


def cache_plan(
    record: ClipRecord, index: int, settings: CacheSettings, geometry: LatentGeometry
) -> ClipPlan:
    """How record ``index`` is cached: first frames, centred crop, fixed or budgeted size.

    ValueError when the size is no multiple of ``geometry.multiple`` or the clip is too short.
    """
    m = geometry.multiple
    if settings.size is None:
        width, height = choose_size(record.width, record.height, settings.pixel_budget, m)
    else:
        width, height = settings.size
        _check_fixed_size(settings.size, geometry)
    frames = choose_frames(
        record.frames, settings.max_frames, geometry.time_compression, geometry.patch[0]
    )
    t = geometry.latent_frames(frames)
    return ClipPlan(
        index=index,
        source=index,
        width=width,
        height=height,
        frames=frames,
        start=0,
        crop=crop_box(record.width, record.height, width, height),
        text=TextChoice.EMPTY,
        condition=(False,) * t,
        tokens=geometry.tokens(width, height, frames),
    )


def _check_fixed_size(size: tuple[int, int], geometry: LatentGeometry) -> None:
    m = geometry.multiple
    if size[0] % m or size[1] % m:
        raise ValueError(
            f"cache size {size[0]}x{size[1]} must have sides that are multiples of {m} "
            f"(VAE space compression {geometry.space_compression} x patch {geometry.patch}), "
            f"e.g. {max(m, size[0] // m * m)}x{max(m, size[1] // m * m)}"
        )


def _cache_meta(
    records: Sequence[ClipRecord],
    vae: torch.nn.Module,
    text_encoder: TextEncoder,
    settings: CacheSettings,
) -> dict[str, Any]:
    config = vae.config  # type: ignore[attr-defined]
    return {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "records": len(records),
        "shards": math.ceil(len(records) / settings.shard_size),
        "settings": settings.to_dict(),
        "space_compression": config.space_compression,
        "time_compression": config.time_compression,
        "latent_channels": config.latent_channels,
        "vae_sha256": vae_fingerprint(vae),
        "vae_encoder_sha256": vae_fingerprint(vae, encoder_only=True),
        "text_encoder": {
            "name": getattr(text_encoder, "name", type(text_encoder).__name__),
            "fingerprint": getattr(text_encoder, "fingerprint", None),
            "dim": int(text_encoder.dim),
        },
        "records_sha256": _records_fingerprint(records),
    }


def _claim_cache_dir(cache_dir: Path, meta: dict[str, Any]) -> None:
    """Write cache.json, or check that the one there was made the same way (to resume). One that
    no shard was finished under (a run that failed or was stopped first) is replaced."""
    path = cache_dir / META_NAME
    if path.is_file() and any((cache_dir / SHARD_DIR).glob("shard-*.jsonl")):
        existing = json.loads(path.read_text())
        if "vae_encoder_sha256" not in existing:  # an older cache: the whole VAE's fingerprint
            meta = {k: v for k, v in meta.items() if k != "vae_encoder_sha256"}
        differ = _differences(existing, meta)
        if differ:
            raise ValueError(
                f"{cache_dir} holds a cache made differently ({'; '.join(differ)}); resume it "
                "with the same manifest, VAE, text encoder and settings, or use a new --out folder"
            )
        return
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """'KEY: OLD there, NEW now' for every key whose values differ, nested dicts key by key
    (e.g. settings.max_frames)."""
    lines = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, "(unset)"), new.get(key, "(unset)")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return lines


def _encode_shard(
    cache_dir: Path,
    shard: int,
    records: Sequence[ClipRecord],
    vae: torch.nn.Module,
    text: TextTokenCache,
    settings: CacheSettings,
    geometry: LatentGeometry,
    bar: tqdm,
) -> tuple[int, list[tuple[str, str]]]:
    """Encode one shard's records and write it; (clips encoded, unreadable (path, why))."""
    tensors: dict[str, torch.Tensor] = {}
    lines: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    shard_name = _shard_path(cache_dir, shard, ".safetensors").relative_to(cache_dir).as_posix()
    first = shard * settings.shard_size
    for i in range(first, min(first + settings.shard_size, len(records))):
        record = records[i]
        bar.update(1)
        try:
            plan = cache_plan(record, i, settings, geometry)
            frames = read_clip_frames(record, plan)
        except (ClipReadError, ValueError) as e:
            why = e.reason if isinstance(e, ClipReadError) else str(e)
            skipped.append((record.path, why))
            lines.append({"record": i, "path": record.path, "error": why})
            continue
        latents = encode_frames(vae, frames, settings.bf16)  # (C, t, h, w) float32
        tensors[f"{i}.latents"] = latents.contiguous()
        for name, tokens in zip(
            ("prompt", "caption"), text.encode([record.prompt, record.caption]), strict=True
        ):
            if len(tokens):
                # a copy: equal texts share one cached tensor, and safetensors refuses shared memory
                tensors[f"{i}.{name}"] = tokens.clone()  # (L, D)
        lines.append(
            {
                "record": i,
                "shard": shard_name,
                "path": record.path,
                "width": plan.width,
                "height": plan.height,
                "frames": plan.frames,
                "latent_shape": list(latents.shape),
                "prompt": record.prompt,
                "caption": record.caption,
            }
        )
    atomic_write(
        _shard_path(cache_dir, shard, ".safetensors"),
        lambda tmp: save_file(tensors, str(tmp), metadata={"format": CACHE_FORMAT}),
    )
    text_lines = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    atomic_write_text(_shard_path(cache_dir, shard, ".jsonl"), text_lines)  # marks it finished
    return len(lines) - len(skipped), skipped


def _merge_index(cache_dir: Path, shards: int) -> Path | None:
    """Write index.jsonl from every shard's lines once all are finished; else None."""
    parts = [_shard_path(cache_dir, k, ".jsonl") for k in range(shards)]
    if not all(p.is_file() for p in parts):
        return None
    return atomic_write_text(cache_dir / INDEX_NAME, "".join(p.read_text() for p in parts))


def build_cache(
    records: Sequence[ClipRecord],
    vae: torch.nn.Module,
    text_encoder: TextEncoder,
    cache_dir: str | os.PathLike[str],
    settings: CacheSettings | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> CacheReport:
    """Encode this rank's unfinished shards of ``records`` into ``cache_dir`` (resumable)."""
    if not records:
        raise ValueError("build_cache needs at least one record, got an empty manifest")
    settings = settings or CacheSettings()
    cache_dir = Path(cache_dir)
    geometry = LatentGeometry.from_vae(vae, settings.patch)
    if settings.size is not None:
        _check_fixed_size(settings.size, geometry)
    else:  # raises for a budget below one multiple x multiple frame
        choose_size(geometry.multiple, geometry.multiple, settings.pixel_budget, geometry.multiple)
    meta = _cache_meta(records, vae, text_encoder, settings)
    mine = rank_share(range(meta["shards"]), rank, world_size)  # checked before the claim
    (cache_dir / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    _claim_cache_dir(cache_dir, meta)
    todo = [k for k in mine if not _shard_path(cache_dir, k, ".jsonl").is_file()]
    report = CacheReport(cache_dir, meta["shards"], len(mine), 0, len(mine) - len(todo), 0)
    text = TextTokenCache(text_encoder)
    size = settings.shard_size
    total = sum(min(size, len(records) - k * size) for k in todo)
    with tqdm(total=total, desc=f"caching (rank {rank})", unit="clip", disable=not progress) as bar:
        for shard in todo:
            clips, skipped = _encode_shard(
                cache_dir, shard, records, vae, text, settings, geometry, bar
            )
            report.written += 1
            report.clips += clips
            report.skipped += skipped
    report.index = _merge_index(cache_dir, meta["shards"])
    return report


def read_cache_meta(cache_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(cache_dir) / META_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{cache_dir} is not a Kinema latent cache: no {META_NAME}")
    meta = json.loads(path.read_text())
    if meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        raise ValueError(
            f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}, expected "
            f"{CACHE_FORMAT!r} version {CACHE_VERSION}"
        )
    return meta


def check_cache_vae(cache_dir: str | os.PathLike[str], vae: torch.nn.Module) -> None:
    """Raise ValueError unless the cache's latents were encoded by this VAE (the same encoder and
    latent statistics; the decoder may differ, e.g. after a decoder-only fine-tune): a
    transformer trained on them only makes sense through it. Caches written before the encoder's
    fingerprint was recorded are checked against the whole VAE."""
    meta = read_cache_meta(cache_dir)
    encoder_only = "vae_encoder_sha256" in meta
    stored = meta["vae_encoder_sha256"] if encoder_only else meta.get("vae_sha256")
    actual = vae_fingerprint(vae, encoder_only=encoder_only)
    if stored != actual:
        raise ValueError(
            f"the latents in {cache_dir} were encoded by another VAE (fingerprint {stored}) than "
            f"the one given (model.vae, fingerprint {actual}); point model.vae at the VAE the "
            f"cache was built with, or rebuild the cache with `kinema cache --vae`"
        )


def read_cache_index(cache_dir: str | os.PathLike[str]) -> tuple[list[dict], list[dict]]:
    """(entries, errors) of a finished cache, in record order; IncompleteCacheError if not."""
    cache_dir = Path(cache_dir)
    meta = read_cache_meta(cache_dir)
    index = cache_dir / INDEX_NAME
    if not index.is_file():
        done = sum(_shard_path(cache_dir, k, ".jsonl").is_file() for k in range(meta["shards"]))
        raise IncompleteCacheError(
            f"{cache_dir} is unfinished: {done} of {meta['shards']} shards written; run "
            "`kinema cache` again for the missing ones (finished shards are skipped)"
        )
    lines = [json.loads(s) for s in index.read_text().splitlines() if s.strip()]
    entries = [line for line in lines if "error" not in line]
    errors = [line for line in lines if "error" in line]
    return entries, errors


class CachedData:
    """``TrainingData`` from a latent cache (see ``kinema.data.training``).

    The plan is OnlineData's with every clip taken from its start and whole stored frame; a clip
    shorter than stored is a prefix of its latents (exact for the causal VAE), an image is latent
    frame 0. The stored sizes must be what ``config.pixel_budget`` gives (latents can't be
    resized). Samples are float32 CPU tensors.
    """

    def __init__(
        self, config: DataConfig, cache_dir: str | os.PathLike[str], patch: Triple
    ) -> None:
        self.config, self.cache_dir = config, Path(cache_dir)
        self.meta = read_cache_meta(self.cache_dir)
        self.entries, self.errors = read_cache_index(self.cache_dir)
        if not self.entries:
            raise ValueError(f"{self.cache_dir} holds no readable clip ({len(self.errors)} failed)")
        self.geometry = LatentGeometry(
            self.meta["space_compression"], self.meta["time_compression"], tuple(patch)
        )
        catalogue = [
            ClipMeta(e["width"], e["height"], e["frames"], bool(e["prompt"]), bool(e["caption"]))
            for e in self.entries
        ]
        self.planner = Planner(config, catalogue, self.geometry, prefix_only=True)
        self.text_dim = int(self.meta["text_encoder"]["dim"])
        self._clips = 0

    def plan(self, step: int) -> list[ClipPlan]:
        return self.planner.plan(step)

    def samples(self, step: int, rank: int = 0, world_size: int = 1) -> list[TrainingSample]:
        out = [self._load(plan) for plan in rank_share(self.plan(step), rank, world_size)]
        self._clips += len(out)
        return out

    @property
    def stats(self) -> dict[str, int]:
        """Counters (summed over ranks and resumes): clips loaded by this process."""
        return {"clips": self._clips}

    @property
    def facts(self) -> dict[str, int]:
        """Fixed facts of the cache: readable records, records it skipped as unreadable."""
        return {"cache_entries": len(self.entries), "cache_unreadable": len(self.errors)}

    def _load(self, plan: ClipPlan) -> TrainingSample:
        entry = self.entries[plan.source]
        record = entry["record"]
        with safe_open(self.cache_dir / entry["shard"], framework="pt") as f:
            latents = f.get_slice(f"{record}.latents")[:, : plan.latent_frames]  # (C, t, h, w)
            if plan.text is TextChoice.EMPTY:
                text = torch.zeros(0, self.text_dim)
            else:
                text = f.get_tensor(f"{record}.{plan.text.value}")  # (L, D)
        condition = torch.tensor(plan.condition, dtype=torch.bool)
        return TrainingSample(latents.float().contiguous(), text.float(), condition)
