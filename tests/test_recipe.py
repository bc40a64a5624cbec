"""`kinema train recipe`: every stage of the default model's training in one command, on a tiny
world and the debug DiT; a rerun resumes instead of redoing, other arguments are refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from kinema.compression.vae import PRESETS as VAE_PRESETS
from kinema.compression.vae import CausalVAE
from kinema.hub import load_model
from kinema.train.checkpoint import latest_checkpoint
from kinema.train.cli import main as train_main
from kinema.train.recipe import config_from_args, expert_config, transformer_config

# the debug DiT on the debug VAE's 4 latent channels in 1x4x4 patches, MiniLM's 384-d tokens
DEBUG_DIT = ["model.preset=debug", "model.overrides={in_dim: 64, text_dim: 384}"]
QUICK = ["checkpoint_every=1", "log_every=1", "threads=1", "tensorboard=false"]


def recipe_args(tmp_path, vae_dir) -> list[str]:
    argv = ["--out", str(tmp_path / "recipe"), "--vae", str(vae_dir), "--workers", "1"]
    argv += ["--clips", "3", "--sizes", "32x32,48x32", "--frames", "5", "--pan-clips", "2"]
    argv += ["--steps", "2", "--expert-steps", "1"]
    for item in [*DEBUG_DIT, *QUICK, "optim.warmup_steps=1", "samples.every=0"]:
        argv += ["--set", item]
    for item in [*QUICK, "optim.warmup_steps=1"]:
        argv += ["--expert-set", item]
    return argv


def test_the_recipe_trains_a_model_with_its_expert_and_resumes(tmp_path, capsys):
    torch.manual_seed(0)
    vae_dir = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "vae")
    argv = recipe_args(tmp_path, vae_dir)
    out = tmp_path / "recipe"
    assert train_main(["recipe", *argv]) == 0

    printed = capsys.readouterr().out
    names = ["world", "world-cache", "transformer", "base", "pans", "pans-cache", "expert", "model"]
    for k, name in enumerate(names, 1):
        assert f"[recipe {k}/8] {name}" in printed
    record = json.loads((out / "recipe.json").read_text())
    assert list(record["seconds"]) == names and all(s >= 0 for s in record["seconds"].values())
    assert record["config"]["world"]["clips"] == 3
    # the world: three clips in the two sizes, no held-out pair; the pans all pan
    world = [
        json.loads(line) for line in (out / "world" / "manifest.jsonl").read_text().splitlines()
    ]
    assert [(c["width"], c["height"]) for c in world] == [(32, 32), (48, 32), (32, 32)]
    pans = [json.loads(line) for line in (out / "pans" / "manifest.jsonl").read_text().splitlines()]
    assert [c["spec"]["camera"] for c in pans] == ["pan left", "pan right"]

    model = load_model(out / "model")  # hash-checked
    assert model.dit.boundary == 0.9
    assert model.index.extra["training"]["step"] == 2
    assert model.index.extra["high_noise_expert"]["step"] == 1
    base = load_file(out / "base" / "transformer" / "model.safetensors")
    assert all(v.dtype == torch.bfloat16 for v in base.values() if v.is_floating_point())
    ema = load_file(latest_checkpoint(out / "transformer") / "ema.safetensors")
    for name, value in model.dit.low.state_dict().items():
        assert torch.equal(value, ema[name].to(torch.bfloat16).float()), name
    assert any(
        not torch.equal(model.dit.high.state_dict()[n], v)
        for n, v in model.dit.low.state_dict().items()
    )

    # rerun (the number of render workers changes only speed): every stage finds its work
    # done; the trainers resume at their last step
    before = (out / "world" / "manifest.jsonl").stat().st_mtime_ns
    assert train_main(["recipe", *argv, "--workers", "2"]) == 0
    assert (out / "world" / "manifest.jsonl").stat().st_mtime_ns == before
    again = capsys.readouterr().out
    assert "resumed from step 2" in again and "resumed from step 1" in again
    assert "0 clips encoded" in again

    # the same folder with other arguments is refused, naming what differs
    with pytest.raises(ValueError, match=r"other arguments \(world differ"):
        train_main(["recipe", *argv, "--clips", "4"])


def test_the_expert_is_the_transformers_dit_on_the_recipes_folders(tmp_path):
    recipe = config_from_args(
        ["--out", str(tmp_path), "--set", "model.preset=small", "--expert-set", "steps=7"]
    )
    dit, expert = transformer_config(recipe), expert_config(recipe)
    assert dit.model.preset == expert.model.preset == "small"
    assert (dit.steps, expert.steps) == (10750, 7)  # the presets' steps unless given
    assert dit.data.options["cache_dir"] == str(tmp_path / "world-cache")
    assert expert.data.options["cache_dir"] == str(tmp_path / "pans-cache")
    assert expert.model.init_from == str(tmp_path / "base")
    assert expert.model.timestep_shift == 30.0 and dit.model.timestep_shift == 3.0
    with pytest.raises(ValueError, match="drop --no-expert"):
        config_from_args(["--no-expert", "--expert-steps", "5"])
    assert config_from_args(["--no-expert"]).expert is None


def test_a_stage_stopped_by_its_time_budget_stops_the_recipe_until_rerun(tmp_path, capsys):
    torch.manual_seed(0)
    vae_dir = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "vae")
    argv = ["--out", str(tmp_path / "r"), "--vae", str(vae_dir), "--workers", "1", "--no-expert"]
    argv += ["--clips", "1", "--sizes", "32x32", "--frames", "5", "--steps", "2"]
    for item in [*DEBUG_DIT, *QUICK, "optim.warmup_steps=1", "time_budget_s=0"]:
        argv += ["--set", item]
    assert train_main(["recipe", *argv]) == 1  # one step, then the budget
    assert "stopped at its time budget; rerun to resume" in capsys.readouterr().out
    assert not (tmp_path / "r" / "model").exists()
    assert train_main(["recipe", *argv]) == 0  # the last step: the budget stops nothing
    assert load_model(tmp_path / "r" / "model").index.extra["training"]["step"] == 2
    seconds = json.loads((tmp_path / "r" / "recipe.json").read_text())["seconds"]
    assert list(seconds) == ["world", "world-cache", "transformer", "model"]
