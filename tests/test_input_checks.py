"""Bad input is a ValueError naming the value and what would be valid, before any work: the VAE
trainer's config and overrides, WorldBench manifests, world clips, captioning and VAE eval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinema.cli import main
from kinema.compression.evaluate import prepare_frames
from kinema.compression.train import VAETrainConfig, VAETrainer, apply_overrides
from kinema.language.caption import CaptionJob
from kinema.world.dataset import make_world, read_manifest, resolve_workers
from kinema.world.evaluate import evaluate_manifest
from kinema.world.sampler import sample_scene

# --- the VAE trainer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr=abc", r"lr: expected a number, got 'abc'"),
        ("steps=2.5", r"steps: expected an integer, got 2.5"),
        ("threads=true", r"threads: expected an integer, got True"),
        ("sizes=[[64]]", r"sizes\[0\]: expected a list of 2 values, got 1"),
    ],
)
def test_vae_overrides_are_type_checked_naming_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(VAETrainConfig(preset="debug"), [override])


def test_vae_overrides_still_convert_lists_and_strings():
    config = apply_overrides(
        VAETrainConfig(), ["sizes=[[32, 48]]", "bf16=auto", "init_from=null", "lr=1e-3"]
    )
    assert config.sizes == ((32, 48),) and config.bf16 == "auto" and config.init_from is None
    assert config.lr == 1e-3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("steps=-5", r"steps must be an int >= 1, got -5"),
        ("threads=0", r"threads must be an int >= 1, got 0"),
        ("lr=-1", r"lr must be a finite number > 0, got -1.0"),
        ("clips_per_step=0", r"clips_per_step must be an int >= 1, got 0"),
        ("decay_steps=0", r"decay_steps must be an int >= 1 \(or None.*got 0"),
    ],
)
def test_vae_trainer_refuses_values_out_of_range(tmp_path, override, message):
    config = apply_overrides(VAETrainConfig(preset="debug", out_dir=str(tmp_path)), [override])
    with pytest.raises(ValueError, match=message):
        VAETrainer(config)


def test_cli_vae_train_with_negative_steps_exports_nothing(tmp_path, capsys):
    out = tmp_path / "vt"
    code = main(["vae", "train", "--preset", "debug", "--out", str(out), "--steps", "-5"])
    assert code == 2 and "steps must be an int >= 1, got -5" in capsys.readouterr().err
    assert not out.exists()


# --- WorldBench, world clips, captions ---------------------------------------------------------


def test_an_empty_manifest_is_not_scored(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("")
    with pytest.raises(ValueError, match=rf"manifest {manifest} holds no clips"):
        read_manifest(manifest)
    with pytest.raises(ValueError, match="holds no clips"):
        evaluate_manifest([], progress=False)


@pytest.mark.parametrize("workers", [-1, 1.5, True])
def test_workers_must_be_a_count(workers):
    with pytest.raises(ValueError, match=rf"workers must be an int >= 1 .*got {workers!r}"):
        resolve_workers(workers)


def test_workers_zero_or_none_mean_one_per_core():
    assert resolve_workers(0) == resolve_workers(None) >= 1 and resolve_workers(3) == 3


@pytest.mark.parametrize("fps", [0, -8.0, math.nan, math.inf])
def test_world_fps_must_be_finite_and_positive(tmp_path, fps):
    with pytest.raises(ValueError, match=r"fps must be a finite number > 0"):
        sample_scene(np.random.default_rng(0), fps=fps)
    with pytest.raises(ValueError, match=r"fps must be a number in \(0, 1000\]"):
        make_world(tmp_path / "w", 1, fps=fps, progress=False)
    assert not (tmp_path / "w").exists()


def test_make_world_refuses_negative_workers(tmp_path):
    with pytest.raises(ValueError, match=r"workers must be an int >= 1 .*got -2"):
        make_world(tmp_path / "w", 1, workers=-2, progress=False)


def test_caption_limit_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match=r"limit must be None \(no limit\) or >= 0, got -1"):
        CaptionJob(tmp_path / "m.jsonl", tmp_path / "o.jsonl", limit=-1)


# --- VAE eval ----------------------------------------------------------------------------------


@pytest.mark.parametrize("short_side", [-32, 0, 2, True])
def test_vae_eval_short_side_must_fit_a_latent_pixel(short_side):
    frames = np.zeros((5, 32, 48, 3), np.uint8)
    with pytest.raises(ValueError, match=rf"short_side must be an int >= 4 .*got {short_side!r}"):
        prepare_frames(frames, short_side, multiple=4, time_factor=4)
    assert prepare_frames(frames, 16, multiple=4, time_factor=4).shape == (5, 16, 24, 3)
