"""Output folders: a writer replaces only a folder of its own kind (a model folder, a VAE
folder, a checkpoint), never a file or a folder of the user's; a run that failed before its
first piece of work leaves no claim that blocks the corrected rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kinema.atomic import atomic_directory, check_replaceable
from kinema.cli import main
from kinema.compression.vae import PRESETS as VAE_PRESETS
from kinema.compression.vae import CausalVAE
from kinema.data import CacheSettings, build_cache, read_manifest
from kinema.hub import ModelIndex, load_model, save_model
from kinema.text import TextEmbedding
from kinema.train import Trainer, load_config
from kinema.train.cli import main as train_main
from kinema.transformer import DiT, get_preset
from kinema.world.dataset import make_world


def users_folder(path: Path) -> dict[str, bytes]:
    """A folder of the user's: a video and notes; returns what it holds, to compare after."""
    path.mkdir(parents=True)
    (path / "holiday.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 a video")
    (path / "notes.txt").write_text("my notes")
    return snapshot(path)


def snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def no_partial_folders(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(".")]


def test_atomic_directory_replaces_only_a_folder_of_its_own_kind(tmp_path):
    check_replaceable(tmp_path / "new", ["model_index.json"])  # absent: fine
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty", ["model_index.json"])
    before = users_folder(tmp_path / "videos")
    refused = pytest.raises(ValueError, match=r"videos holds other things \(no model_index\.json\)")
    with refused, atomic_directory(tmp_path / "videos", markers=("model_index.json",)):
        raise AssertionError("the block must not run")  # checked before any work
    (tmp_path / "a.mp4").write_bytes(b"a video")
    refused = pytest.raises(ValueError, match=r"a\.mp4 is a file, not a folder.*does not exist")
    with refused, atomic_directory(tmp_path / "a.mp4", markers=("model_index.json",)):
        pass
    # without markers: the files the new folder holds (a VAE folder's, a checkpoint's)
    refused = pytest.raises(ValueError, match=r"no config\.json, model\.safetensors")
    with refused, atomic_directory(tmp_path / "videos") as tmp:
        (tmp / "config.json").write_text("{}")
        (tmp / "model.safetensors").write_bytes(b"")
    assert snapshot(tmp_path / "videos") == before
    assert (tmp_path / "a.mp4").read_bytes() == b"a video"
    assert no_partial_folders(tmp_path)
    for _ in range(2):  # an empty folder, then the folder it wrote: both replaced
        with atomic_directory(tmp_path / "empty") as tmp:
            (tmp / "config.json").write_text("{}")
    assert snapshot(tmp_path / "empty") == {"config.json": b"{}"}


def test_save_model_refuses_a_users_folder_or_file_and_rewrites_a_model_folder(tmp_path):
    torch.manual_seed(0)
    vae, dit = CausalVAE(VAE_PRESETS["debug"]), DiT(get_preset("debug"))
    before = users_folder(tmp_path / "videos")
    with pytest.raises(ValueError, match=r"videos holds other things \(no model_index\.json\)"):
        save_model(tmp_path / "videos", vae, dit, ModelIndex())
    assert snapshot(tmp_path / "videos") == before
    (tmp_path / "a.mp4").write_bytes(b"a video")
    with pytest.raises(ValueError, match="is a file"):
        save_model(tmp_path / "a.mp4", vae, dit, ModelIndex())
    assert (tmp_path / "a.mp4").read_bytes() == b"a video"
    # a VAE folder is no model folder either
    vae.save_pretrained(tmp_path / "vae")
    with pytest.raises(ValueError, match=r"no model_index\.json"):
        save_model(tmp_path / "vae", vae, dit, ModelIndex())
    assert CausalVAE.from_pretrained(tmp_path / "vae").config == vae.config
    assert no_partial_folders(tmp_path)

    save_model(tmp_path / "m", vae, dit, ModelIndex(extra={"take": 1}))
    save_model(tmp_path / "m", vae, dit, ModelIndex(extra={"take": 2}))  # a re-export
    assert load_model(tmp_path / "m").index.extra == {"take": 2}


def test_vae_save_pretrained_refuses_a_users_folder_and_rewrites_a_vae_folder(tmp_path):
    vae = CausalVAE(VAE_PRESETS["debug"])
    before = users_folder(tmp_path / "videos")
    with pytest.raises(ValueError, match="videos holds other things"):
        vae.save_pretrained(tmp_path / "videos")
    assert snapshot(tmp_path / "videos") == before
    vae.save_pretrained(tmp_path / "vae")
    vae.save_pretrained(tmp_path / "vae")  # the same kind of folder: rewritten


def test_vae_replace_refuses_a_users_folder_and_names_it(tmp_path, capsys):
    torch.manual_seed(0)
    vae = CausalVAE(VAE_PRESETS["debug"])
    dit = DiT(get_preset("debug"))
    model = save_model(tmp_path / "m", vae, dit, ModelIndex(patch=(1, 2, 2)))
    before = users_folder(tmp_path / "videos")
    cli = ["vae", "replace", "--model", str(model), "--vae", str(model / "vae")]
    assert main([*cli, "--out", str(tmp_path / "videos")]) == 2
    error = capsys.readouterr().err
    assert "videos holds other things (no model_index.json)" in error
    assert "an empty folder, or a folder holding model_index.json" in error
    assert snapshot(tmp_path / "videos") == before
    (tmp_path / "a.mp4").write_bytes(b"a video")
    assert main([*cli, "--out", str(tmp_path / "a.mp4")]) == 2
    assert (tmp_path / "a.mp4").read_bytes() == b"a video"
    assert main([*cli, "--out", str(tmp_path / "copy")]) == 0
    assert main([*cli, "--out", str(tmp_path / "copy")]) == 0  # its own output: rewritten
    load_model(tmp_path / "copy")


class RandomTextEncoder:
    """Fixed random token features per prompt, standing in for MiniLM (text_dim 32)."""

    def encode(self, prompts: list[str]) -> TextEmbedding:
        g = torch.Generator().manual_seed(len(prompts[0]))
        return TextEmbedding(torch.randn(1, 5, 32, generator=g), torch.ones(1, 5, dtype=torch.bool))


def test_train_export_refuses_a_users_folder_and_rewrites_its_own(tmp_path, capsys):
    torch.manual_seed(0)
    vae_dir = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "vae")
    run = tmp_path / "run"
    items = [f"out_dir={run}", f"model.vae={vae_dir}", "steps=1", "threads=1"]
    items += ["tensorboard=false", "samples.every=0", "optim.warmup_steps=1"]
    Trainer(load_config(None, items, preset="debug"), text_encoder=RandomTextEncoder()).run(
        progress=False
    )
    before = users_folder(tmp_path / "videos")
    assert main(["train", "export", str(run), "--out", str(tmp_path / "videos")]) == 2
    assert "videos holds other things" in capsys.readouterr().err
    assert snapshot(tmp_path / "videos") == before
    (tmp_path / "a.mp4").write_bytes(b"a video")
    assert main(["train", "export", str(run), "--out", str(tmp_path / "a.mp4")]) == 2
    assert (tmp_path / "a.mp4").read_bytes() == b"a video"
    assert train_main(["export", str(run)]) == 0  # RUN/model again: a re-export
    assert train_main(["export", str(run), "--out", str(run / "model")]) == 0
    load_model(run / "model")


class FakeTextEncoder:
    """One fixed 8-d token per word (the TextEncoder protocol)."""

    name, fingerprint, dim, max_length = "fake", "fake:0", 8, 16

    def encode(self, prompts: list[str]) -> TextEmbedding:
        return TextEmbedding.from_sequences([torch.ones(len(p.split()), 8) for p in prompts])


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    manifest = make_world(out, n=2, seed=2, num_frames=5, workers=1, progress=False)
    return read_manifest(manifest)


@pytest.mark.parametrize(("rank", "world_size"), [(3, 2), (-1, 2), (0, 0)])
def test_a_bad_rank_fails_before_the_cache_folder_is_claimed(records, tmp_path, rank, world_size):
    vae = CausalVAE(VAE_PRESETS["debug"]).eval()
    settings = CacheSettings(max_frames=5, shard_size=1)
    cache = tmp_path / "c"
    with pytest.raises(ValueError, match=rf"rank < world_size, got rank={rank}, world_size="):
        build_cache(records, vae, FakeTextEncoder(), cache, settings, rank, world_size)
    assert not (cache / "cache.json").exists()
    report = build_cache(records, vae, FakeTextEncoder(), cache, settings, progress=False)
    assert report.index is not None


def test_a_cache_names_the_setting_that_differs_and_takes_new_ones_until_a_shard_is_done(
    records, tmp_path
):
    vae = CausalVAE(VAE_PRESETS["debug"]).eval()
    cache, encoder = tmp_path / "c", FakeTextEncoder()
    first = CacheSettings(max_frames=5, shard_size=1)
    # as a run stopped before its first shard: rank 1 of 2 of a one-shard cache claims, writes none
    build_cache(records[:1], vae, encoder, cache, first, 1, 2, progress=False)
    assert (cache / "cache.json").is_file() and not list((cache / "shards").iterdir())
    other = CacheSettings(max_frames=1, shard_size=1)
    build_cache(records, vae, encoder, cache, other, progress=False)  # takes the new settings
    meta = json.loads((cache / "cache.json").read_text())
    assert meta["settings"]["max_frames"] == 1 and meta["records"] == 2
    differ = r"made differently \(settings\.max_frames: 1 there, 5 now"
    with pytest.raises(ValueError, match=differ):
        build_cache(records, vae, encoder, cache, first, progress=False)
