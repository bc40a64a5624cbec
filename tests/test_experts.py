"""High-noise experts: part of a DiT trained (`model.trainable`), stored as the tensors it changed,
loaded sharing the rest, and routed by timestep while sampling."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from kinema.compression.vae import PRESETS as VAE_PRESETS
from kinema.compression.vae import CausalVAE
from kinema.diffusion import generate_latents
from kinema.hub import ModelIndex, ModelIntegrityError, load_model, save_model
from kinema.train import Trainer, load_config
from kinema.train.checkpoint import latest_checkpoint
from kinema.train.cli import main as train_main
from kinema.train.export import _check_same_vae
from kinema.train.trainer import select_trainable
from kinema.transformer import DiT, get_preset
from kinema.transformer.experts import TimestepExperts

CROSS = "blocks.*.cross_attn.*"


def two_dits() -> tuple[DiT, DiT]:
    """A base DiT and an expert that differs from it in cross-attention alone."""
    torch.manual_seed(0)
    base = DiT(get_preset("debug"))
    with torch.no_grad():  # off adaLN-Zero's start, where every output is exactly zero
        for p in base.parameters():
            p.add_(0.1 * torch.randn_like(p))
    expert = DiT(get_preset("debug"))
    expert.load_state_dict(base.state_dict())
    with torch.no_grad():
        for name, p in expert.named_parameters():
            if ".cross_attn." in name:
                p.add_(0.05 * torch.randn_like(p))
    return base.eval(), expert.eval()


def inputs(t: float, given: int = 0) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    cfg = get_preset("debug")
    n = 8
    positions = torch.stack(
        torch.meshgrid(torch.arange(2), torch.arange(2), torch.arange(2), indexing="ij"), -1
    ).reshape(n, 3)
    timesteps = torch.full((n,), t)
    timesteps[:given] = 0.0  # given clean tokens carry t = 0
    return (
        torch.randn(n, cfg.in_dim),
        positions,
        torch.zeros(n, dtype=torch.long),
        timesteps,
        torch.randn(3, cfg.text_dim),
        torch.zeros(3, dtype=torch.long),
    )


@torch.no_grad()
def test_the_noisiest_token_picks_the_expert():
    base, expert = two_dits()
    pair = TimestepExperts(base, expert, boundary=0.9)
    for t, given, chosen in [(1.0, 0, expert), (0.9, 4, expert), (0.89, 0, base), (0.3, 4, base)]:
        x = inputs(t, given)
        assert torch.equal(pair(*x), chosen(*x)), (t, given)
    assert not torch.equal(base(*inputs(1.0)), expert(*inputs(1.0)))  # the two do differ
    with pytest.raises(ValueError, match=r"boundary must be in \(0, 1\], got 1.5"):
        TimestepExperts(base, expert, 1.5)
    wider = DiT(dataclasses.replace(get_preset("debug"), depth=1))
    with pytest.raises(ValueError, match="must share one DiT config"):
        TimestepExperts(base, wider, 0.9)


@torch.no_grad()
def test_sampling_switches_expert_at_the_boundary():
    base, expert = two_dits()
    calls = []

    def spy(name, model):
        def hook(module, args):
            calls.append((name, float(args[3].max())))

        model.register_forward_pre_hook(hook)

    spy("low", base)
    spy("high", expert)
    text = torch.randn(3, get_preset("debug").text_dim)
    generate_latents(
        TimestepExperts(base, expert, 0.5),
        text,
        text[:0],
        (get_preset("debug").in_dim // 4, 2, 4, 4),
        (1, 2, 2),
        steps=4,
        guidance_scale=2.0,
        shift=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    # times 1, .75, .5, .25 with guidance: one call each for both texts; t >= 0.5 goes to the
    # expert
    assert calls == [("high", 1.0), ("high", 0.75), ("high", 0.5), ("low", 0.25)]


def test_a_folder_stores_the_experts_own_tensors_and_shares_the_rest(tmp_path):
    base, expert = two_dits()
    vae = CausalVAE(VAE_PRESETS["debug"])
    index = ModelIndex(patch=(1, 2, 2), high_noise_boundary=0.8)
    folder = save_model(tmp_path / "m", vae, base, index, high_noise_dit=expert)
    stored = load_file(folder / "transformer_high" / "model.safetensors")
    assert stored and all(".cross_attn." in name for name in stored)
    assert set(stored) == {n for n, _ in expert.named_parameters() if ".cross_attn." in n}

    loaded = load_model(folder)  # hash-checked, transformer_high included
    assert isinstance(loaded.dit, TimestepExperts) and loaded.dit.boundary == 0.8
    for name, p in loaded.dit.high.named_parameters():
        low = loaded.dit.low.get_parameter(name)
        assert (p is low) == (".cross_attn." not in name), name  # one tensor where shared
        assert torch.equal(p, expert.get_parameter(name)), name
    assert json.loads((folder / "model_index.json").read_text())["high_noise_boundary"] == 0.8

    weights = folder / "transformer_high" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ModelIntegrityError, match=r"transformer_high/model\.safetensors"):
        load_model(folder)


def test_int8_deltas_store_matrices_in_a_quarter_of_the_bytes_within_half_a_step(tmp_path):
    base, expert = two_dits()
    vae = CausalVAE(VAE_PRESETS["debug"])
    index = ModelIndex(patch=(1, 2, 2), high_noise_boundary=0.9)
    folder = save_model(tmp_path / "q", vae, base, index, high_noise_dit=expert, int8_delta=True)
    stored = load_file(folder / "transformer_high" / "model.safetensors")
    matrices = {n for n, p in expert.named_parameters() if ".cross_attn." in n and p.ndim == 2}
    assert {k for k, v in stored.items() if v.dtype == torch.int8} == {
        n + ".delta_int8" for n in matrices
    }
    loaded = load_model(folder).dit.high
    for name, p in expert.named_parameters():
        got = loaded.get_parameter(name)
        if name in matrices:  # base + int8 * scale: off by at most half a step of its row
            step = stored[name + ".delta_scale"]
            assert ((got - p).abs() <= step / 2 + 1e-6).all() and not torch.equal(got, p), name
        else:
            assert torch.equal(got, p), name

    stored[next(iter(matrices)) + ".delta_scale"] = torch.ones(1, 1)  # the wrong shape
    damaged = tmp_path / "damaged.safetensors"
    save_file(stored, str(damaged))
    (folder / "transformer_high" / "model.safetensors").write_bytes(damaged.read_bytes())
    with pytest.raises(ValueError, match=r"needs a finite .*delta_scale' of one per row"):
        load_model(folder, verify=False)


def test_an_expert_and_its_boundary_come_together(tmp_path):
    base, expert = two_dits()
    vae = CausalVAE(VAE_PRESETS["debug"])
    with pytest.raises(ValueError, match=r"needs index\.high_noise_boundary"):
        save_model(tmp_path / "a", vae, base, ModelIndex(), high_noise_dit=expert)
    with pytest.raises(ValueError, match=r"needs index\.high_noise_boundary"):
        save_model(tmp_path / "b", vae, base, ModelIndex(high_noise_boundary=0.9))
    with pytest.raises(ValueError, match="equals the model it joins"):
        save_model(
            tmp_path / "c", vae, base, ModelIndex(high_noise_boundary=0.9), high_noise_dit=base
        )
    index = ModelIndex().to_dict()
    for bad in (0, "0.9", True):
        index["high_noise_boundary"] = bad
        with pytest.raises(
            ValueError, match=r"high_noise_boundary \(--boundary\) must be a number in \(0, 1\]"
        ):
            ModelIndex.from_dict(index)
    with pytest.raises(ValueError, match=r"got 1\.5"):
        ModelIndex(high_noise_boundary=1.5)  # nor is one written
    assert not any(tmp_path.iterdir())  # nothing half-written


def tiny_config(out_dir, *overrides: str):
    base = [
        f"out_dir={out_dir}",
        "steps=4",
        "checkpoint_every=2",
        "log_every=1",
        "threads=1",
        "tensorboard=false",
        "optim.warmup_steps=1",
        "optim.lr=1e-2",
    ]
    return load_config(None, [*base, *overrides], preset="debug")


def test_trainable_trains_its_tensors_and_leaves_the_rest_bit_for_bit(tmp_path):
    first = tmp_path / "first"
    Trainer(tiny_config(first, "steps=2")).run(progress=False)
    start = load_file(latest_checkpoint(first) / "ema.safetensors")

    run = tmp_path / "expert"
    overrides = [f"model.init_from={first}", f"model.trainable=['{CROSS}', 'final_layer.*']"]
    trainer = Trainer(tiny_config(run, *overrides))
    assert trainer.trained_parameters and all(
        ".cross_attn." in n or n.startswith("final_layer.") for n in trainer.trained_parameters
    )
    trainer.run(progress=False)
    ckpt = latest_checkpoint(run)
    for kind in ("model", "ema"):
        tensors = load_file(ckpt / f"{kind}.safetensors")
        for name, value in tensors.items():
            trained = name in trainer.trained_parameters
            assert torch.equal(value, start[name]) != trained, (kind, name)

    # killed after step 2 and resumed: the same weights as the run that went through
    whole = load_file(ckpt / "model.safetensors")
    again = tmp_path / "again"
    Trainer(tiny_config(again, *overrides, "steps=2")).run(progress=False)
    Trainer(tiny_config(again, *overrides)).run(progress=False)
    resumed = load_file(latest_checkpoint(again) / "model.safetensors")
    assert all(torch.equal(resumed[k], v) for k, v in whole.items())

    with pytest.raises(ValueError, match=r"\['blocks\.\*\.crossattn\.\*'\] match no DiT parameter"):
        select_trainable(DiT(get_preset("debug")), ["blocks.*.crossattn.*"])


def test_export_adds_a_run_as_the_high_noise_expert_of_a_model(tmp_path):
    torch.manual_seed(0)
    vae_dir = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "vae")
    base_run = tmp_path / "base"
    Trainer(tiny_config(base_run, f"model.vae={vae_dir}", "steps=2")).run(progress=False)
    base = base_run / "model"
    run = tmp_path / "expert"
    overrides = [f"model.vae={vae_dir}", f"model.init_from={base}", f"model.trainable=['{CROSS}']"]
    Trainer(tiny_config(run, *overrides, "steps=2")).run(progress=False)

    out = tmp_path / "with-expert"
    argv = ["export", str(run), "--expert-of", str(base), "--out", str(out), "--boundary", "0.95"]
    assert train_main(argv) == 0
    stored = load_file(out / "transformer_high" / "model.safetensors")
    assert stored and all(".cross_attn." in name for name in stored)
    loaded, before = load_model(out), load_model(base)
    assert loaded.dit.boundary == 0.95
    assert loaded.index.extra["high_noise_expert"]["trainable"] == [CROSS]
    assert loaded.index.defaults == before.index.defaults  # the base's settings are kept
    for name, value in before.dit.state_dict().items():
        assert torch.equal(loaded.dit.low.state_dict()[name], value), name
    ema = load_file(latest_checkpoint(run) / "ema.safetensors")
    for name, value in loaded.dit.high.state_dict().items():
        assert torch.equal(value, ema[name]), name
    other_vae = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "other-vae")
    with pytest.raises(ValueError, match="an expert must share the latents"):
        _check_same_vae(str(other_vae), loaded.vae, base)
    _check_same_vae(str(vae_dir), loaded.vae, base)  # the run's own VAE passes
    with pytest.raises(ValueError, match="give --expert-of MODEL"):
        train_main(["export", str(run), "--out", str(tmp_path / "x"), "--boundary", "0.9"])
