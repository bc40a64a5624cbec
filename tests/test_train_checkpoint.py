"""The NaN guard (non-finite loss or gradient: step skipped, nothing changed; many in a row stop
the run) and checkpoints (never non-finite, atomic: a failed write leaves `latest` alone, the
newest K kept)."""

from __future__ import annotations

import json

import pytest
import torch

from kinema.train import Trainer, TrainingDivergedError, load_config
from kinema.train import checkpoint as checkpoint_module
from kinema.train.checkpoint import NonFiniteWeightsError, latest_checkpoint, list_checkpoints
from kinema.train.synthetic import SyntheticData


def tiny_config(out_dir, *overrides: str):
    base = [
        f"out_dir={out_dir}",
        "steps=6",
        "checkpoint_every=2",
        "log_every=1",
        "threads=1",
        "tensorboard=false",
        "optim.warmup_steps=1",
        "max_bad_steps=3",
    ]
    return load_config(None, [*base, *overrides], preset="debug")


class PoisonedData:
    """Synthetic clips whose latents are NaN at the given steps."""

    def __init__(self, config, nan_steps) -> None:
        self.inner = SyntheticData(config.data.synthetic, 4, 32, config.seed, (1, 2, 2))
        self.nan_steps = set(nan_steps)

    @property
    def stats(self) -> dict[str, int]:
        return self.inner.stats

    def samples(self, step, rank=0, world_size=1):
        samples = self.inner.samples(step, rank, world_size)
        if step in self.nan_steps:
            samples[0].latents[0, 0, 0, 0] = float("nan")
        return samples


def snapshot(trainer: Trainer) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    state.update({f"ema.{k}": v.clone() for k, v in trainer.ema.shadow.items()})
    for i, entries in trainer.optimizer.state.items():
        state.update({f"opt.{i}.{k}": v.clone() for k, v in entries.items()})
    return state


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_non_finite_loss_or_gradient_skips_the_step_and_changes_nothing(tmp_path):
    config = tiny_config(tmp_path / "run")
    trainer = Trainer(config, data=PoisonedData(config, nan_steps={1}))
    assert not trainer.train_step(0).skipped
    before = snapshot(trainer)
    result = trainer.train_step(1)  # NaN latents -> NaN loss
    assert result.skipped and trainer.skipped_steps == 1 and trainer.bad_steps == 1
    assert_same(before, snapshot(trainer))
    assert all(p.grad is None for p in trainer.model.parameters())

    hook = trainer.model.x_embedder.weight.register_hook(lambda g: g * float("inf"))
    result = trainer.train_step(2)  # finite loss, infinite gradient
    hook.remove()
    assert (
        result.skipped
        and result.loss is not None
        and not torch.isfinite(torch.tensor(result.grad_norm))
    )
    assert_same(before, snapshot(trainer))
    assert not trainer.train_step(3).skipped and trainer.bad_steps == 0
    assert trainer.skipped_steps == 2


def test_skipped_steps_are_logged_and_many_in_a_row_stop_the_run(tmp_path):
    run = tmp_path / "run"
    config = tiny_config(run)
    with pytest.raises(TrainingDivergedError, match="3 non-finite steps in a row"):
        Trainer(config, data=PoisonedData(config, nan_steps={1, 3, 4, 5})).run(progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] is None for r in rows] == [False, True, False, True, True, True]
    assert [r["skipped"] for r in rows] == [0, 1, 1, 2, 3, 4]
    assert latest_checkpoint(run).name == "step_00000004"  # the finite one before the stop


def test_checkpoints_refuse_non_finite_weights_and_survive_failed_writes(tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = tiny_config(run, "keep_checkpoints=2")
    trainer = Trainer(config)
    for step in range(2):
        trainer.train_step(step)
        trainer.step = step + 1
        trainer.save()
    assert latest_checkpoint(run).name == "step_00000002"

    # a write that fails half-way (the EMA file) leaves latest on the previous checkpoint
    real_save = checkpoint_module.save_file

    def failing_save(tensors, path, *args, **kwargs):
        if path.endswith("ema.safetensors"):
            raise OSError("disk full")
        return real_save(tensors, path, *args, **kwargs)

    trainer.step = 3
    monkeypatch.setattr(checkpoint_module, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save()
    monkeypatch.setattr(checkpoint_module, "save_file", real_save)
    assert latest_checkpoint(run).name == "step_00000002"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "latest",
        "step_00000001",
        "step_00000002",
    ]

    # non-finite weights are never written
    with torch.no_grad():
        trainer.model.final_layer.linear.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=r"final_layer\.linear\.weight"):
        trainer.save()
    assert latest_checkpoint(run).name == "step_00000002"

    # a fresh trainer resumes from latest; the newest K are kept
    resumed = Trainer(config)
    assert resumed.resume() and resumed.step == 2
    resumed.run(progress=False)
    assert [p.name for p in list_checkpoints(run)] == ["step_00000004", "step_00000006"]


def test_pruning_never_removes_the_checkpoint_just_written(tmp_path):
    run = tmp_path / "run"
    config = tiny_config(run, "keep_checkpoints=2")
    trainer = Trainer(config)
    for step in (5, 6):  # folders of higher steps, e.g. from a run stopped before latest moved
        trainer.step = step
        trainer.save()
    trainer.step = 3
    trainer.save()
    assert latest_checkpoint(run).name == "step_00000003"
    names = sorted(p.name for p in (run / "checkpoints").glob("step_*"))
    assert names == ["step_00000003", "step_00000006"]
