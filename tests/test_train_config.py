"""Training configs: YAML + --set overrides into typed dataclasses, unknown keys and bad types
rejected with the key named, presets equal to the shipped YAML files, the VAE stage mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from kinema.cli import main as kinema_main
from kinema.train.config import (
    ConfigError,
    DataSource,
    Stage,
    Strategy,
    TrainConfig,
    get_preset,
    load_config,
    save_config,
    vae_train_config,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_and_overrides_become_typed_dataclasses(tmp_path):
    path = write(
        tmp_path,
        "preset: debug\nsteps: 7\noptim: {lr: 1e-4, betas: [0.8, 0.9]}\n"
        "model: {overrides: {depth: 3}}\n",
    )
    config = load_config(
        path,
        [
            "optim.warmup_steps=2",
            "parallel.strategy=fsdp",
            "model.overrides.hidden=32",
            "samples.prompts=[a cat, a dog]",
            "time_budget_s=1.5",
        ],
    )
    assert isinstance(config, TrainConfig)
    assert config.steps == 7 and config.optim.lr == 1e-4  # YAML reads 1e-4 as a string
    assert config.optim.betas == (0.8, 0.9) and config.optim.warmup_steps == 2
    assert config.optim.min_lr_ratio == get_preset("debug").optim.min_lr_ratio  # merged section
    assert config.parallel.strategy is Strategy.FSDP
    assert config.samples.prompts == ("a cat", "a dog")
    assert config.time_budget_s == 1.5
    dit = config.model.dit_config()
    assert (dit.depth, dit.hidden, dit.heads) == (3, 32, 4)


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("stepz: 3\n", [], r"unknown key 'stepz'; valid keys at the top level: .*steps"),
        ("optim: {lrr: 1}\n", [], r"unknown key 'optim.lrr'; valid keys in optim: .*lr, "),
        ("", ["data.synthetic.batchsize=2"], r"unknown key 'data.synthetic.batchsize'.*batch_size"),
        ("", ["model.overrides.depht=2"], r"unknown key 'model.overrides.depht'.*depth"),
        ("", ["steps.x=1"], r"steps is a value, not a section"),
        ("", ["steps"], r"not KEY=VALUE"),
        ("", ["vae.lr=0.1"], r"vae.lr is set by optim.lr"),
    ],
)
def test_unknown_keys_name_the_key_and_the_valid_ones(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text), overrides)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("steps=ten", r"steps: expected an integer, got 'ten'"),
        ("steps=2.5", r"steps: expected an integer, got 2.5"),
        ("optim.lr=fast", r"optim.lr: expected a number"),
        ("parallel.bf16=1", r"parallel.bf16: expected true or false, got 1"),
        (
            "parallel.strategy=zero3",
            r"parallel.strategy: expected one of \['none', 'ddp', 'fsdp'\]",
        ),
        ("optim.betas=[0.9]", r"optim.betas: expected a list of 2 values, got 1"),
        ("model.patch=[1, 2, x]", r"model.patch\[2\]: expected an integer"),
        ("optim=3", r"optim: expected a mapping of keys"),
        ("model.overrides.hidden=30", r"hidden \(30\) must be divisible by heads"),
        ("ema_decay=1.0", r"ema_decay must be in \[0, 1\)"),
        ("model.timestep_shift=0", r"model.timestep_shift must be positive, got 0"),
        (
            "model.high_noise_fraction=1.5",
            r"model.high_noise_fraction must be in \[0, 1\], got 1.5",
        ),
        ("model.high_noise_min=1", r"model.high_noise_min must be in \[0, 1\), got 1"),
        ("optim.decay_steps=0", r"optim.decay_steps must be positive, got 0"),
        (
            "samples.solver=rk4",
            r"samples.solver: unknown solver 'rk4'; valid solvers are \['euler'",
        ),
        (
            "samples.guidance_scale=-4",
            r"samples.guidance_scale must be a finite number >= 0 .*got -4",
        ),
        ("samples.given_guidance_scale=.nan", r"samples.given_guidance_scale must be a finite"),
        ("optim.decay_steps=1.5", r"optim.decay_steps: expected an integer"),
        ("model.preset=huge", r"unknown DiT preset 'huge'"),
        ("samples.steps=-3", r"samples.steps must be an int >= 1, got -3"),
        ("samples.fps=0", r"samples.fps: fps must be a number in \(0, 1000\], got 0"),
        ("samples.num_frames=0", r"samples.num_frames must be an int >= 1, got 0"),
        ("samples.width=33", r"samples.width must be a positive multiple of 2 \(patch 2\)"),
        ("samples.height=0", r"samples.height must be a positive multiple of 2 \(patch 2\)"),
        ("threads=-2", r"threads must be an int >= 1 .*got -2"),
        ("time_budget_s=-5", r"time_budget_s must be a number >= 0 .*got -5.0"),
        ("optim.weight_decay=-1", r"optim.weight_decay must be a finite number >= 0, got -1.0"),
        ("optim.betas=[2, -1]", r"optim.betas must be two numbers in \[0, 1\), got \(2.0, -1.0\)"),
        ("data.synthetic.batch_size=0", r"data.synthetic.batch_size must be an int >= 1, got 0"),
        (
            "data.synthetic.caption_dropout=3",
            r"data.synthetic.caption_dropout must be a number in \[0, 1\], got 3.0",
        ),
        ("model.text_max_length=0", r"model.text_max_length must be an int >= 1, got 0"),
        ("data.options={manifest: m.jsonl}", r"data.options configures kinema.data"),
    ],
)
def test_values_are_type_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override], preset="debug")


def test_sample_sizes_are_checked_against_the_vae_in_model_vae(tmp_path):
    from kinema.compression.vae import PRESETS as VAE_PRESETS
    from kinema.compression.vae import CausalVAE

    vae = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "vae")  # 4x space
    config = load_config(None, [f"model.vae={vae}", "samples.width=16"], preset="debug")
    assert config.samples.width == 16
    with pytest.raises(
        ConfigError,
        match=r"samples.width must be a positive multiple of 8 \(VAE space compression 4 x "
        r"patch 2\), got 36",
    ):
        load_config(None, [f"model.vae={vae}", "samples.width=36"], preset="debug")


def test_shipped_yaml_files_are_their_presets():
    assert load_config(CONFIGS / "dit-debug.yaml") == get_preset("debug")
    expert = load_config(CONFIGS / "dit-world-expert.yaml")
    assert expert == get_preset("world-expert")
    vae = load_config(CONFIGS / "vae-tiny.yaml")
    assert vae == get_preset("vae-tiny") and vae.stage is Stage.VAE


def test_the_world_tiny_export_carries_both_guidance_defaults():
    from kinema.train.export import model_index

    defaults = model_index(get_preset("world-tiny"), 0).defaults
    assert (defaults.guidance_scale, defaults.given_guidance_scale) == (7.0, 4.0)
    assert defaults.guidance_for("t2v") == 7.0 and defaults.guidance_for("connect") == 4.0
    assert defaults.camera_noise == 1.0 and defaults.held_start == 0.75
    with pytest.raises(ConfigError, match=r"samples\.camera_noise must be a number from 0 to 1"):
        load_config(CONFIGS / "dit-world-tiny.yaml", ["samples.camera_noise=2"])
    with pytest.raises(ConfigError, match=r"samples\.held_start must be a number greater than 0"):
        load_config(CONFIGS / "dit-world-tiny.yaml", ["samples.held_start=0"])


def test_world_tiny_yaml_checks_its_data_options_against_kinema_data():
    pytest.importorskip("kinema.data")
    config = load_config(CONFIGS / "dit-world-tiny.yaml")
    assert config == get_preset("world-tiny")
    assert config.data.source is DataSource.CACHED
    assert config.data.options["cache_dir"] == "runs/world-cache"
    assert "caption_dropout" in config.data.options  # resolved: every DataConfig field is written
    assert config.model.dit_config().in_dim == 16 * 1 * 4 * 4  # latent channels x patch volume
    with pytest.raises(ConfigError, match=r"unknown key 'data.options.manifset'"):
        load_config(CONFIGS / "dit-world-tiny.yaml", ["data.options.manifset=x"])
    with pytest.raises(ConfigError, match=r"needs data.options.cache_dir"):
        load_config(CONFIGS / "dit-world-tiny.yaml", ["data.options.cache_dir=null"])


def test_saved_config_loads_back_equal(tmp_path):
    config = load_config(None, ["model.overrides.depth=1", "samples.every=5"], preset="debug")
    path = save_config(config, tmp_path / "run" / "config.yaml")
    assert load_config(path) == config
    assert "lr:" not in path.read_text().split("\nvae:")[1]  # shared VAE fields are not repeated


def test_vae_stage_maps_onto_the_vae_trainer_config():
    config = load_config(
        CONFIGS / "vae-tiny.yaml",
        ["optim.lr=2e-3", "steps=12", "vae.clips_per_step=2", "optim.decay_steps=5"],
    )
    vae = vae_train_config(config)
    assert (vae.preset, vae.lr, vae.steps, vae.clips_per_step) == ("tiny-s4", 2e-3, 12, 2)
    assert vae.decay_steps == 5
    assert (vae.out_dir, vae.bf16, vae.threads) == ("runs/vae-s4", "auto", 2)
    with pytest.raises(ConfigError, match="stage vae runs in one process"):
        load_config(CONFIGS / "vae-tiny.yaml", ["parallel.strategy=ddp"])


def test_cli_reports_config_errors(tmp_path, capsys):
    path = write(tmp_path, "preset: debug\n")
    assert kinema_main(["train", str(path), "--set", "optim.lrr=1"]) == 2
    assert "unknown key 'optim.lrr'" in capsys.readouterr().err
    assert kinema_main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_vae_stage_runs_the_existing_vae_trainer(tmp_path, monkeypatch):
    seen = {}

    class RecordingVAETrainer:
        def __init__(self, config) -> None:
            seen["config"] = config

        def run(self, progress: bool = True):
            return tmp_path / "run" / "vae"

    monkeypatch.setattr("kinema.compression.train.VAETrainer", RecordingVAETrainer)
    out = tmp_path / "run"
    argv = ["train", str(CONFIGS / "vae-tiny.yaml"), "--set", f"out_dir={out}", "--set", "steps=5"]
    assert kinema_main(argv) == 0
    assert (seen["config"].steps, seen["config"].out_dir, seen["config"].preset) == (
        5,
        str(out),
        "tiny-s4",
    )
    assert load_config(out / "config.yaml").stage is Stage.VAE
