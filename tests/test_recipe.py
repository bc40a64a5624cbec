"""`kinema train recipe`: every stage of the default model's training in one command, on a tiny
world and the debug DiT; a rerun resumes instead of redoing, other arguments are refused."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from kinema.compression.vae import PRESETS as VAE_PRESETS
from kinema.compression.vae import CausalVAE
from kinema.hub import load_model
from kinema.train import recipe as recipe_module
from kinema.train.checkpoint import latest_checkpoint
from kinema.train.cli import main as train_main
from kinema.train.recipe import (
    AFTER_TRANSFORMER_S,
    RecipeConfig,
    Stage,
    config_from_args,
    expert_config,
    run_recipe,
    transformer_config,
    vae_config,
    with_deadline,
)

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
    names = ["world", "world-cache", "pans", "pans-cache", "transformer", "base", "expert", "model"]
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


def test_a_recipe_takes_new_steps_until_its_transformer_begins_to_decay(tmp_path, capsys):
    torch.manual_seed(0)
    vae_dir = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "vae")

    def argv(out: str, steps: int, *extra: str) -> list[str]:
        args = ["--out", str(tmp_path / out), "--vae", str(vae_dir), "--workers", "1"]
        args += ["--no-expert", "--clips", "1", "--sizes", "32x32", "--frames", "5"]
        for item in [*DEBUG_DIT, *QUICK, "optim.warmup_steps=1", "optim.decay_steps=1", *extra]:
            args += ["--set", item]
        return [*args, "--steps", str(steps)]

    budget = "time_budget_s=0"  # one step a call
    assert train_main(["recipe", *argv("r", 2, budget)]) == 1  # step 1 of 2: no decay yet
    assert train_main(["recipe", *argv("r", 3, budget)]) == 1  # step 2 of 3
    assert "steps go from 2 to 3 at step 1" in capsys.readouterr().out
    assert train_main(["recipe", *argv("r", 3, budget)]) == 0  # step 3, decayed: done
    record = json.loads((tmp_path / "r" / "recipe.json").read_text())
    assert "steps=3" in record["config"]["transformer"]
    with pytest.raises(ValueError, match="transformer differ"):  # step 3 had a decayed rate
        train_main(["recipe", *argv("r", 5, budget)])
    assert train_main(["recipe", *argv("straight", 3)]) == 0  # the same run in one go

    def losses(out: str) -> list[tuple[float, float]]:
        rows = (tmp_path / out / "transformer" / "metrics.jsonl").read_text().splitlines()
        return [(r["lr"], r["loss"]) for r in map(json.loads, rows)]

    assert len(losses("r")) == 3 and losses("r") == losses("straight")


def test_hours_give_the_transformer_what_the_stages_before_it_left(tmp_path):
    recipe = config_from_args(["--out", str(tmp_path), "--hours", "1", "--expert-steps", "40"])
    dit = transformer_config(recipe)
    spent = {"world": 100.0, "world-cache": 200.0, "pans": 10.0}
    given = with_deadline(dit, recipe, spent)
    assert given.deadline_s == 3600 - 310 - AFTER_TRANSFORMER_S
    assert given.deadline_reserve_steps == 40  # the expert's steps, after it
    assert with_deadline(dit, config_from_args(["--out", str(tmp_path)]), spent) is dit
    with pytest.raises(ValueError, match="leaves it no time"):
        with_deadline(dit, recipe, {"world": 3500.0})
    # stopped before: the transformer's wall time its trainer did not count comes off too
    spent["transformer"] = 999.0  # no checkpoint yet: all of it was lost
    assert with_deadline(dit, recipe, spent).deadline_s == 3600 - 310 - 999 - AFTER_TRANSFORMER_S
    step = tmp_path / "transformer" / "checkpoints" / "step_00000250"
    step.mkdir(parents=True)
    (step / "state.json").write_text(json.dumps({"step": 250, "train_seconds": 900.0}))
    (step.parent / "latest").write_text(step.name)
    given = with_deadline(dit, recipe, spent)  # 999 s of wall time, 900 s counted
    assert given.deadline_s == pytest.approx(3600 - 310 - 99 - AFTER_TRANSFORMER_S)
    with pytest.raises(ValueError, match="hours must be positive"):
        config_from_args(["--hours", "0"])


def test_a_recipe_takes_new_hours_until_its_transformer_begins_to_decay(tmp_path, capsys):
    torch.manual_seed(0)
    vae_dir = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "vae")

    def argv(hours: str) -> list[str]:
        args = ["--out", str(tmp_path / "r"), "--vae", str(vae_dir), "--workers", "1"]
        args += ["--no-expert", "--clips", "1", "--sizes", "32x32", "--frames", "5"]
        for item in [*DEBUG_DIT, *QUICK, "optim.warmup_steps=1", "optim.decay_steps=1"]:
            args += ["--set", item]
        return [*args, "--steps", "3", "--set", "time_budget_s=0", "--hours", hours]

    assert train_main(["recipe", *argv("10")]) == 1  # step 1 of 3
    assert train_main(["recipe", *argv("9")]) == 1  # step 2 of 3
    assert "hours go from 10.0 to 9.0 at step 1" in capsys.readouterr().out
    assert train_main(["recipe", *argv("9")]) == 0  # step 3: done
    with pytest.raises(ValueError, match="hours differ"):  # step 3 had a decayed rate
        train_main(["recipe", *argv("8")])


def test_a_recipe_killed_with_sigterm_records_the_time_its_stage_spent(tmp_path, monkeypatch):
    def killed() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)  # the handler raises before this ends

    monkeypatch.setattr(
        recipe_module, "stages", lambda recipe, seconds: [Stage("transformer", killed)]
    )
    before = signal.getsignal(signal.SIGTERM)
    start = time.perf_counter()
    with pytest.raises(SystemExit) as stopped:
        run_recipe(RecipeConfig(out_dir=str(tmp_path / "r")))
    assert stopped.value.code == 128 + signal.SIGTERM and time.perf_counter() - start < 5
    record = json.loads((tmp_path / "r" / "recipe.json").read_text())
    assert list(record["seconds"]) == ["transformer"]
    assert signal.getsignal(signal.SIGTERM) == before


# the debug VAE on world clips alone, one step a stage
QUICK_VAE = ["preset=debug", "sizes=[[32,32]]", "lengths=[1,5]", "threads=1", "log_every=1"]
QUICK_VAE += ['source_weights={"world":1,"video":0,"photo":0}', "checkpoint_every=1"]


def test_train_vae_trains_the_vae_first_and_the_transformer_learns_its_latents(tmp_path, capsys):
    torch.manual_seed(0)
    out = tmp_path / "r"
    argv = ["--out", str(out), "--train-vae", "--vae-steps", "1,1,1", "--workers", "1"]
    argv += ["--no-expert", "--clips", "1", "--sizes", "32x32", "--frames", "5", "--steps", "1"]
    for item in QUICK_VAE:
        argv += ["--vae-set", item]
    for item in [*DEBUG_DIT, *QUICK, "optim.warmup_steps=1", "samples.every=0"]:
        argv += ["--set", item]
    assert train_main(["recipe", *argv]) == 0
    seconds = json.loads((out / "recipe.json").read_text())["seconds"]
    assert list(seconds) == [
        "vae-short",
        "vae-long",
        "vae-decoder",
        "world",
        "world-cache",
        "transformer",
        "model",
    ]

    short, long = out / "vae-short" / "vae", out / "vae-long" / "vae"
    decoder = out / "vae-decoder" / "vae"
    assert json.loads((out / "vae-decoder" / "config.json").read_text())["init_from"] == str(long)
    assert json.loads((out / "vae-long" / "config.json").read_text())["init_from"] == str(short)
    assert json.loads((out / "vae-short" / "config.json").read_text())["init_from"] is None
    latents = CausalVAE.from_pretrained(long).state_dict()  # the decoder stage keeps them
    trained = CausalVAE.from_pretrained(decoder).state_dict()
    assert all(torch.equal(latents[k], trained[k]) for k in trained if not k.startswith("decoder."))
    assert any(not torch.equal(latents[k], trained[k]) for k in trained if k.startswith("decoder."))
    shipped = load_model(out / "model").vae.state_dict()  # the model carries the trained VAE
    assert trained.keys() == shipped.keys()
    assert all(torch.equal(trained[k], shipped[k]) for k in trained)
    assert not torch.equal(
        CausalVAE.from_pretrained(short).state_dict()["decoder.conv_out.conv.weight"],
        trained["decoder.conv_out.conv.weight"],
    )
    capsys.readouterr()
    assert train_main(["recipe", *argv]) == 0  # every stage done: the VAE stages resume at 1
    assert capsys.readouterr().out.count("resumed from step 1") == 4


def test_the_scratch_vae_is_the_documented_commands(tmp_path):
    recipe = config_from_args(["--out", str(tmp_path), "--train-vae"])
    short, long, decoder = (vae_config(recipe, k) for k in range(3))
    assert (short.preset, short.steps, short.lr, short.lengths) == (
        "tiny-s4r",
        3000,
        1e-3,
        (1, 1, 5, 9),
    )
    assert (long.steps, long.lr, long.lengths, long.init_from) == (
        400,
        4e-4,
        (1, 9, 17, 33),
        str(tmp_path / "vae-short" / "vae"),
    )
    assert (decoder.steps, decoder.lr, decoder.lengths, decoder.init_from) == (
        400,
        2e-4,
        (1, 9, 17),
        str(tmp_path / "vae-long" / "vae"),
    )
    assert decoder.freeze_encoder and decoder.latent_noise == 0.3
    for config in (short, long, decoder):
        assert config.chroma_weight == 3 and config.sizes == ((64, 64), (64, 96), (96, 64))
        assert config.source_weights == {"world": 0.6, "video": 0.2, "photo": 0.2}
    assert transformer_config(recipe).model.vae == str(tmp_path / "vae-decoder" / "vae")
    again = config_from_args(["--train-vae", "--vae-steps", "5,6,7", "--vae-set", "lr=0.01"])
    assert [vae_config(again, k).steps for k in (0, 1, 2)] == [5, 6, 7]
    assert [vae_config(again, k).lr for k in (0, 1, 2)] == [0.01, 0.01, 0.01]
    with pytest.raises(ValueError, match="add --train-vae"):
        config_from_args(["--vae-steps", "5,6"])
    with pytest.raises(ValueError, match="'5': give 3 positive step counts"):
        config_from_args(["--train-vae", "--vae-steps", "5"])
    with pytest.raises(SystemExit):  # a VAE folder or one trained, not both
        config_from_args(["--train-vae", "--vae", "models/default/vae"])
    with pytest.raises(ValueError, match="either a VAE folder"):
        RecipeConfig(vae=None)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--clips", "0"], r"--clips \(world\.clips\) must be an int >= 1, got 0"),
        (["--pan-clips", "-1"], r"--pan-clips \(pans\.clips\) must be an int >= 1, got -1"),
        (["--frames", "0"], r"--frames \(world\.frames\) must be an int >= 1, got 0"),
        (["--sizes", ""], r"--sizes \(world\.sizes\) must name at least one WIDTHxHEIGHT"),
        (["--sizes", "64x63"], r"--sizes: size '64x63' is odd"),
        (["--workers", "0"], r"--workers must be an int >= 1 or None, got 0"),
        (["--hours", "0"], r"--hours must be positive"),
    ],
)
def test_bad_arguments_fail_by_flag_before_any_stage(tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):  # not hours later, in the stage they reach
        config_from_args(["--out", str(tmp_path), "--train-vae", *flags])


def test_bad_arguments_leave_no_claim_on_the_folder(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(ValueError, match=r"--clips \(world\.clips\)"):
        train_main(["recipe", "--out", str(out), "--clips", "0"])
    assert not out.exists()  # nothing claimed: the corrected rerun starts afresh


def test_a_recipe_config_checks_what_no_flag_sets():
    pans = RecipeConfig().pans
    with pytest.raises(ValueError, match=r"pans\.frames must be an int >= 1, got 0"):
        RecipeConfig(pans=dataclasses.replace(pans, frames=0))
    with pytest.raises(ValueError, match=r"pans\.cameras: camera 'spin' is not a camera move"):
        RecipeConfig(pans=dataclasses.replace(pans, cameras=("spin",)))
    with pytest.raises(ValueError, match=r"pans\.sizes: size '4x4' is too small"):
        RecipeConfig(pans=dataclasses.replace(pans, sizes=((4, 4),)))
