"""The DiT training loop: a killed or time-limited run resumes to exactly the uninterrupted run,
data stats (unreadable clips) reach the metrics, samples and export go through the VAE and
kinema.hub, the loss curve plots."""

from __future__ import annotations

import itertools
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from kinema.compression.vae import PRESETS as VAE_PRESETS
from kinema.compression.vae import CausalVAE
from kinema.hub import load_model
from kinema.text import TextEmbedding
from kinema.train import Trainer, learning_rate, load_config
from kinema.train.checkpoint import latest_checkpoint
from kinema.train.cli import main as train_main
from kinema.train.export import model_index
from kinema.video import probe_video


def tiny_config(out_dir, *overrides: str):
    base = [
        f"out_dir={out_dir}",
        "steps=6",
        "checkpoint_every=2",
        "log_every=1",
        "threads=1",
        "tensorboard=false",
        "optim.warmup_steps=2",
    ]
    return load_config(None, [*base, *overrides], preset="debug")


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def final_tensors(run_dir) -> dict[str, torch.Tensor]:
    path = latest_checkpoint(run_dir)
    out = {}
    for name in ("model", "ema", "optimizer"):
        out.update({f"{name}.{k}": v for k, v in load_file(path / f"{name}.safetensors").items()})
    return out


class KilledError(Exception):
    pass


def test_learning_rate_warms_up_then_decays_to_the_floor():
    config = tiny_config("unused", "optim.lr=1e-3", "optim.warmup_steps=4", "steps=20")
    lrs = [learning_rate(config.optim, config.steps, s) for s in range(20)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))
    assert learning_rate(config.optim, 20, 20) == pytest.approx(1e-4)  # lr * min_lr_ratio


def test_adamw_is_fused_on_the_cpu_and_steps_as_the_unfused_one_does(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run"))
    assert trainer.optimizer.defaults["fused"] is True
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    unfused = torch.optim.AdamW(
        [torch.nn.Parameter(p.clone()) for p in start],
        lr=trainer.config.optim.lr,
        betas=trainer.config.optim.betas,
        weight_decay=trainer.config.optim.weight_decay,
        foreach=False,
    )
    for p, q in zip(params, unfused.param_groups[0]["params"], strict=True):
        p.grad = torch.randn_like(p)
        q.grad = p.grad.clone()
    for _ in range(3):
        trainer.optimizer.step()
        unfused.step()
    for p, q, s in zip(params, unfused.param_groups[0]["params"], start, strict=True):
        assert not torch.equal(p, s)
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def test_resume_after_a_kill_or_a_time_budget_repeats_the_uninterrupted_run(tmp_path, monkeypatch):
    extra = ("data.synthetic.corrupt_probability=0.3",)
    Trainer(tiny_config(tmp_path / "straight", *extra)).run(progress=False)
    straight = rows(tmp_path / "straight")
    assert [r["step"] for r in straight] == [1, 2, 3, 4, 5, 6]
    assert straight[-1]["data"]["skipped"] > 0  # "unreadable" clips replaced, counted

    # killed during step 6 (after step 5 was logged, the last checkpoint at step 4)
    original = Trainer.train_step

    def dies_at_step_5(self, step):
        if step == 5:
            raise KilledError
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", dies_at_step_5)
    with pytest.raises(KilledError):
        Trainer(tiny_config(tmp_path / "killed", *extra)).run(progress=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert latest_checkpoint(tmp_path / "killed").name == "step_00000004"
    Trainer(tiny_config(tmp_path / "killed", *extra)).run(progress=False)

    # stopped by a time budget after its first step, then rerun without one
    Trainer(tiny_config(tmp_path / "budget", *extra, "time_budget_s=0")).run(progress=False)
    assert latest_checkpoint(tmp_path / "budget").name == "step_00000001"
    Trainer(tiny_config(tmp_path / "budget", *extra)).run(progress=False)

    expected = final_tensors(tmp_path / "straight")
    for run in ("killed", "budget"):
        resumed = rows(tmp_path / run)
        assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
        for a, b in zip(resumed, straight, strict=True):
            assert a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"]
            assert a["data"] == b["data"] and a["lr"] == b["lr"]
        got = final_tensors(tmp_path / run)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(got[key], value), key


class RandomTextEncoder:
    """Fixed random token features per prompt, standing in for MiniLM (text_dim 32)."""

    def encode(self, prompts: list[str]) -> TextEmbedding:
        g = torch.Generator().manual_seed(len(prompts[0]))
        return TextEmbedding(torch.randn(1, 5, 32, generator=g), torch.ones(1, 5, dtype=torch.bool))


def test_samples_and_export_round_trip_through_kinema_hub(tmp_path):
    torch.manual_seed(0)
    vae_dir = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "vae")
    run = tmp_path / "run"
    config = tiny_config(
        run,
        f"model.vae={vae_dir}",
        "steps=2",
        "samples.every=2",
        "samples.prompts=[a red ball, a blue cube]",
        "samples.num_frames=5",
        "samples.height=16",
        "samples.width=16",
        "samples.steps=2",
        "samples.solver=stochastic",
    )
    model_dir = Trainer(config, text_encoder=RandomTextEncoder()).run(progress=False)
    assert model_dir == run / "model"
    for i in range(2):
        info = probe_video(run / "samples" / "step-2" / f"{i:02d}.mp4")
        assert (info.width, info.height, info.num_frames) == (16, 16, 5)
    ema = load_file(latest_checkpoint(run) / "ema.safetensors")
    model = load_file(latest_checkpoint(run) / "model.safetensors")
    assert any(not torch.equal(ema[k], model[k]) for k in ema)  # EMA lags the weights

    assert train_main(["export", str(run), "--out", str(tmp_path / "exported")]) == 0
    for folder in (model_dir, tmp_path / "exported"):
        loaded = load_model(folder)  # hash-checked
        for k, v in loaded.dit.state_dict().items():
            assert torch.equal(v, ema[k]), k
        assert loaded.index.patch == (1, 2, 2) and loaded.index.extra["training"]["step"] == 2
        assert (loaded.index.defaults.width, loaded.index.defaults.num_frames) == (16, 5)
        assert loaded.index.defaults.solver == "stochastic"  # the samples' solver is the model's
    half = tmp_path / "half"
    assert train_main(["export", str(run), "--out", str(half), "--bf16"]) == 0
    stored = load_file(half / "transformer" / "model.safetensors")
    assert all(v.dtype == torch.bfloat16 for v in stored.values() if v.is_floating_point())
    for k, v in load_model(half).dit.state_dict().items():  # loaded back as float32
        assert v.dtype == torch.float32 and torch.equal(v, ema[k].to(torch.bfloat16).float()), k


def test_plot_draws_the_loss_curve(tmp_path):
    run = tmp_path / "run"
    Trainer(tiny_config(run, "steps=3")).run(progress=False)
    assert train_main(["plot", str(run), "--out", str(tmp_path / "loss.png")]) == 0
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "config.yaml").is_file() and load_config(run / "config.yaml").steps == 3


def test_activation_checkpointing_changes_no_number(tmp_path):
    Trainer(tiny_config(tmp_path / "plain", "steps=2")).run(progress=False)
    config = tiny_config(tmp_path / "ac", "steps=2", "parallel.activation_checkpointing=true")
    trainer = Trainer(config)
    trainer.run(progress=False)
    assert [r["loss"] for r in rows(tmp_path / "ac")] == [
        r["loss"] for r in rows(tmp_path / "plain")
    ]
    assert [n for n, _ in trainer.model.named_parameters()] == list(trainer.ema.shadow)


def test_init_from_starts_a_new_run_from_another_runs_ema(tmp_path):
    first = tmp_path / "first"
    Trainer(tiny_config(first, "steps=3")).run(progress=False)
    ema = load_file(latest_checkpoint(first) / "ema.safetensors")

    # a run folder, its checkpoint folder: the EMA weights, bit for bit, at step 0
    for source in (first, latest_checkpoint(first)):
        trainer = Trainer(tiny_config(tmp_path / "second", f"model.init_from={source}"))
        assert trainer.fresh_parameters == []
        state = trainer.model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in ema.items())
        assert trainer.step == 0

    # a model that adds the pooled-text path keeps it as built (zero output) and trains it
    run = tmp_path / "pooled"
    config = tiny_config(
        run, f"model.init_from={first}", "model.overrides.pooled_text=true", "steps=2"
    )
    trainer = Trainer(config)
    assert trainer.fresh_parameters and all(
        n.startswith("pooled_text_embedder.") for n in trainer.fresh_parameters
    )
    assert not trainer.model.pooled_text_embedder.fc2.weight.any()
    trainer.run(progress=False)
    assert trainer.model.pooled_text_embedder.fc2.weight.any()
    # the export says where the run started, since its steps count from there
    assert model_index(config, 2).extra["training"]["init_from"] == str(first)

    # resuming reads its own checkpoint, not init_from, which may be gone by then
    shutil.rmtree(first)
    config = tiny_config(
        run, f"model.init_from={first}", "model.overrides.pooled_text=true", "steps=3"
    )
    resumed = Trainer(config)
    resumed.run(progress=False)
    assert resumed.step == 3 and [r["step"] for r in rows(run)] == [1, 2, 3]


def test_a_resumed_run_names_what_changed_and_the_learning_rate_it_moved(tmp_path, capsys):
    Trainer(tiny_config(tmp_path, "steps=4")).run(progress=False)
    capsys.readouterr()
    Trainer(tiny_config(tmp_path, "steps=4")).run(progress=False)  # nothing changed: says so
    assert "changed since" not in capsys.readouterr().out
    longer = tiny_config(tmp_path, "steps=8", "optim.lr=5e-4")
    Trainer(longer).run(progress=False)
    said = capsys.readouterr().out
    assert "resumed from step 4 (" in said
    assert "changed since that checkpoint: " in said
    assert "optim.lr: 0.001 → 0.0005, " in said and "steps: 4 → 8;" in said
    before = learning_rate(tiny_config(tmp_path, "steps=4").optim, 4, 4)
    after = learning_rate(longer.optim, 8, 4)
    assert f"learning rate {before:.3g} → {after:.3g} from here" in said


def test_init_from_refuses_what_does_not_fit(tmp_path):
    first = tmp_path / "first"
    Trainer(tiny_config(first, "steps=2")).run(progress=False)
    with pytest.raises(ValueError, match=r"other shapes blocks\.0\..* and \d+ more"):
        Trainer(
            tiny_config(tmp_path / "b", f"model.init_from={first}", "model.overrides.hidden=32")
        )
    with pytest.raises(ValueError, match="not a run, checkpoint or model folder"):
        Trainer(tiny_config(tmp_path / "c", f"model.init_from={tmp_path / 'nowhere'}"))
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match="has no complete checkpoint"):
        Trainer(tiny_config(tmp_path / "d", f"model.init_from={tmp_path / 'empty'}"))


def test_metrics_survive_a_row_torn_by_a_kill(tmp_path):
    from kinema.train.metrics import MetricsLog, read_metrics

    log = MetricsLog(tmp_path, tensorboard=False)
    for step in (10, 20, 30):
        log.write({"step": step, "loss": 0.5})
    with log.path.open("a") as f:
        f.write('{"step": 40, "lo')  # the process died mid-write
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20, 30]
    log.truncate_after(20)  # a resume from step 20 drops the later rows and the torn one
    assert [r["step"] for r in read_metrics(tmp_path)] == [10, 20]
    log.path.write_text('{"step": 10}\nnot json\n{"step": 30}\n')
    with pytest.raises(json.JSONDecodeError):  # damage before the last line is not a kill
        read_metrics(tmp_path)
