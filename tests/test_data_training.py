"""OnlineData and CachedData: deterministic steps, rank splits, token budgets, corrupt videos, and
the latent cache (round trip against OnlineData, resume, `kinema cache`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kinema.cli import main
from kinema.compression.vae import PRESETS, CausalVAE
from kinema.data import (
    CachedData,
    CacheSettings,
    ClipRecord,
    DataConfig,
    IncompleteCacheError,
    OnlineData,
    TextChoice,
    TooManyCorruptVideosError,
    TrainingData,
    build_cache,
    open_training_data,
    read_manifest,
)
from kinema.data.cache import check_cache_vae
from kinema.patches import patchify
from kinema.text import TextEmbedding
from kinema.world.dataset import make_world

PATCH = (1, 2, 2)


class FakeTextEncoder:
    """Deterministic per-prompt tokens: one 8-d token per word (the TextEncoder protocol)."""

    name, fingerprint, dim, max_length = "fake", "fake:0", 8, 16

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, prompts: list[str]) -> TextEmbedding:
        self.calls += 1
        sequences = []
        for prompt in prompts:
            seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
            n = min(len(prompt.split()), self.max_length)
            sequences.append(
                torch.randn(n, self.dim, generator=torch.Generator().manual_seed(seed))
            )
        return TextEmbedding.from_sequences(sequences)


@pytest.fixture(scope="module")
def vae() -> CausalVAE:
    torch.manual_seed(0)
    return CausalVAE(PRESETS["debug"]).eval()  # 4x space, 4x time, 4 latent channels


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[ClipRecord]:
    out = tmp_path_factory.mktemp("world")
    sizes = [(64, 64), (96, 64)]
    manifest = make_world(out, n=4, seed=2, sizes=sizes, num_frames=9, workers=1, progress=False)
    return read_manifest(manifest)


def corrupt_record(folder: Path) -> ClipRecord:
    path = folder / "corrupt.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not a video" * 40)
    return ClipRecord(str(path), 64, 64, 9, 8.0, prompt="a broken clip")


def config(**overrides) -> DataConfig:
    # 64x64x9 -> 3x8x8 = 192 tokens, 96x64x9 -> 72x48 -> 3x6x9 = 162 tokens: 2-4 clips a step
    fields = {"token_budget": 600, "max_frames": 9, "image_probability": 0.0, "seed": 7}
    return DataConfig(**(fields | overrides))


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.latents, y.latents, rtol=0, atol=1e-6)
        assert torch.equal(x.text, y.text) and torch.equal(x.condition, y.condition)


def test_online_steps_are_deterministic_and_split_across_ranks(records, vae):
    data = OnlineData(config(caption_dropout=0.3), records, vae, FakeTextEncoder(), PATCH)
    assert isinstance(data, TrainingData)
    whole = data.samples(3)
    again = OnlineData(config(caption_dropout=0.3), records, vae, FakeTextEncoder(), PATCH)
    assert_same(whole, again.samples(3))  # resuming at step 3 gives step 3
    rank0, rank1 = data.samples(3, rank=0, world_size=2), data.samples(3, rank=1, world_size=2)
    assert_same(whole[0::2], rank0)
    assert_same(whole[1::2], rank1)
    assert len(rank0) + len(rank1) == len(whole) and rank1
    plans = data.plan(3)
    assert sum(p.tokens for p in plans) <= 600 and len(whole) == len(plans) >= 2
    for sample, plan in zip(whole, plans, strict=True):
        C, t, h, w = sample.latents.shape
        assert (C, t, h * 4, w * 4) == (4, plan.latent_frames, plan.height, plan.width)
        assert patchify(sample.latents, PATCH)[0].shape[0] == plan.tokens  # tokens as planned
        assert sample.condition.shape == (t,) and sample.condition.dtype == torch.bool
        assert sample.text.shape[1] == 8 and (len(sample.text) == 0) == (
            plan.text is TextChoice.EMPTY
        )
    assert data.stats == {"clips": len(whole) * 2, "skipped": 0, "corrupt_files": 0}
    with pytest.raises(ValueError, match="need 0 <= rank < world_size, got rank=2"):
        data.samples(0, rank=2, world_size=2)
    manifest = str(Path(records[0].path).parent / "manifest.jsonl")
    opened = open_training_data(config(manifest=manifest), vae, FakeTextEncoder(), PATCH)
    assert isinstance(opened, OnlineData) and opened.plan(3) == plans


def test_corrupt_videos_are_replaced_counted_and_capped(records, vae, tmp_path):
    bad = corrupt_record(tmp_path)
    with_bad = [bad, records[0]]
    data = OnlineData(
        config(token_budget=200, max_corrupt=1), with_bad, vae, FakeTextEncoder(), PATCH
    )
    step = next(s for s in range(50) if data.plan(s)[0].source == 0)  # a step that draws it
    first = data.samples(step)
    assert data.stats["skipped"] >= 1 and data.stats["corrupt_files"] == 1
    assert first[0].latents.shape == (4, 3, 16, 16)  # the same shape from a readable clip
    fresh = OnlineData(
        config(token_budget=200, max_corrupt=1), with_bad, vae, FakeTextEncoder(), PATCH
    )
    assert_same(first, fresh.samples(step))  # replacements are deterministic too
    strict = OnlineData(
        config(token_budget=200, max_corrupt=0), with_bad, vae, FakeTextEncoder(), PATCH
    )
    with pytest.raises(TooManyCorruptVideosError, match=r"1 unreadable videos, more than "
                       r"max_corrupt=0: .*corrupt.mp4"):  # fmt: skip
        strict.samples(step)


def test_cache_stores_clips_with_the_same_prompt(records, vae, tmp_path):
    same = [dataclasses.replace(r, prompt="a red ball", caption="a red ball") for r in records[:3]]
    settings = CacheSettings(pixel_budget=64 * 64, max_frames=5, patch=PATCH, shard_size=3)
    report = build_cache(same, vae, FakeTextEncoder(), tmp_path / "c", settings, progress=False)
    assert report.written == 1 and not report.skipped
    tensors = load_file(tmp_path / "c" / "shards" / "shard-000000.safetensors")
    assert torch.equal(tensors["0.prompt"], tensors["2.caption"])


def test_a_cache_names_the_vae_its_latents_need(records, vae, tmp_path):
    settings = CacheSettings(pixel_budget=64 * 64, max_frames=5, patch=PATCH, shard_size=4)
    build_cache(records[:1], vae, FakeTextEncoder(), tmp_path / "c", settings, progress=False)
    check_cache_vae(tmp_path / "c", vae)  # the VAE that encoded it
    tuned = CausalVAE(PRESETS["debug"])
    tuned.load_state_dict(vae.state_dict())
    with torch.no_grad():
        next(tuned.decoder.parameters()).add_(0.1)  # a decoder-only fine-tune: same latents
    check_cache_vae(tmp_path / "c", tuned)
    torch.manual_seed(1)
    other = CausalVAE(PRESETS["debug"])  # same architecture, other weights
    with pytest.raises(ValueError, match=r"encoded by another VAE .*kinema cache --vae"):
        check_cache_vae(tmp_path / "c", other)


def test_cache_resumes_and_matches_online_data(records, vae, tmp_path):
    cache = tmp_path / "cache"
    with_bad = [*records, corrupt_record(tmp_path)]
    settings = CacheSettings(pixel_budget=64 * 64, max_frames=9, patch=PATCH, shard_size=2)
    encoder = FakeTextEncoder()
    # rank 0 of 2 writes shards 0 and 2; the cache is unfinished until rank 1 writes shard 1
    first = build_cache(
        with_bad, vae, encoder, cache, settings, rank=0, world_size=2, progress=False
    )
    assert (first.shards, first.written, first.index) == (3, 2, None)
    assert [Path(p).name for p, _ in first.skipped] == ["corrupt.mp4"]
    with pytest.raises(IncompleteCacheError, match="2 of 3 shards written"):
        CachedData(config(), cache, PATCH)
    second = build_cache(
        with_bad, vae, encoder, cache, settings, rank=1, world_size=2, progress=False
    )
    assert second.written == 1 and second.index == cache / "index.jsonl"
    # a rerun (any world size) finds every shard finished and encodes nothing
    calls = encoder.calls
    rerun = build_cache(with_bad, vae, encoder, cache, settings, progress=False)
    assert (rerun.written, rerun.already_done, encoder.calls) == (0, 3, calls)
    assert not list(cache.rglob(".*.tmp"))
    with pytest.raises(ValueError, match=r"made differently.*settings"):
        build_cache(with_bad, vae, encoder, cache, CacheSettings(max_frames=5), progress=False)

    cached = CachedData(config(caption_dropout=0.3), cache, PATCH)
    online = OnlineData(config(caption_dropout=0.3), records, vae, FakeTextEncoder(), PATCH)
    for step in (0, 1):  # same catalogue, same plan: the same latents, texts and masks
        assert_same(cached.samples(step), online.samples(step))
    assert cached.stats == {"clips": len(cached.plan(0)) + len(cached.plan(1))}
    assert cached.facts == {"cache_entries": 4, "cache_unreadable": 1}

    # shorter clips and images are prefixes of the stored latents: exact for the causal VAE
    short = CachedData(config(max_frames=5, image_probability=0.5), cache, PATCH)
    samples = short.samples(0)
    assert {s.latents.shape[1] for s in samples} <= {1, 2}
    frames = torch.rand(1, 3, 9, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(vae.encode(frames[:, :, :5]), vae.encode(frames)[:, :, :2])

    opened = open_training_data(config(cache_dir=str(cache)), None, None, PATCH)
    assert isinstance(opened, CachedData)


def test_cache_command(records, vae, tmp_path, monkeypatch, capsys):
    manifest = Path(records[0].path).parent / "manifest.jsonl"
    vae.save_pretrained(tmp_path / "vae")
    monkeypatch.setattr("kinema.text.load_text_encoder", lambda spec=None, **kw: FakeTextEncoder())
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    out = tmp_path / "cache"
    argv = ["cache", str(manifest), "--vae", str(tmp_path / "vae"), "--out", str(out),
            "--size", "64x64", "--frames", "5", "--shard-size", "3"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 written, 0 already done; 4 clips encoded" in printed and "index:" in printed
    meta = json.loads((out / "cache.json").read_text())
    assert meta["settings"]["size"] == [64, 64] and meta["shards"] == 2
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [(e["width"], e["height"], e["frames"]) for e in entries] == [(64, 64, 5)] * 4
    assert main([*argv[:-4], "--size", "60x64"]) == 2  # not a multiple of 8
    assert "multiples of 8" in capsys.readouterr().err
    data = CachedData(config(), out, PATCH)
    assert all(s.latents.shape == (4, 2, 16, 16) for s in data.samples(0))
    assert np.isfinite([s.latents.sum().item() for s in data.samples(1)]).all()
    # bfloat16 encoding: recorded in cache.json, latents close to the float32 ones
    half = tmp_path / "cache-bf16"
    assert main([*argv[:5], str(half), *argv[6:], "--bf16"]) == 0
    assert json.loads((half / "cache.json").read_text())["settings"]["bf16"] is True
    full, low = (load_file(c / "shards" / "shard-000000.safetensors") for c in (out, half))
    for key in (k for k in full if k.endswith(".latents")):
        assert low[key].dtype == torch.float32
        assert (low[key] - full[key]).abs().max() < 0.1 * full[key].abs().max()
