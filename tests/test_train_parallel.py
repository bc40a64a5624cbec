"""Two processes (torchrun, gloo on the CPU) with DDP and with FSDP2 train exactly like one process
on the same global batch: the same losses and the same final weights, EMA and optimizer moments.
The FSDP2 run resumes a one-process checkpoint (checkpoints move between 1 and N ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from kinema.train import Trainer, load_config
from kinema.train.checkpoint import latest_checkpoint

TINY = """\
preset: debug
steps: 4
checkpoint_every: 2
log_every: 1
threads: 1
tensorboard: false
optim: {warmup_steps: 1}
data:
  synthetic: {batch_size: 3, caption_dropout: 0.3, condition_probability: 0.5}
"""


def rows(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def final_tensors(run_dir) -> dict[str, torch.Tensor]:
    path = latest_checkpoint(run_dir)
    assert path is not None and path.name == "step_00000004"
    out = {}
    for name in ("model", "ema", "optimizer"):
        out.update({f"{name}.{k}": v for k, v in load_file(path / f"{name}.safetensors").items()})
    return out


def torchrun(config_path, *overrides: str) -> None:
    sets = [arg for o in overrides for arg in ("--set", o)]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "kinema.cli",
        "train",
        str(config_path),
        "--no-progress",
        *sets,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def reference(config_path, tmp_path_factory):
    """The one-process run: its metrics rows and final tensors."""
    run = tmp_path_factory.mktemp("single") / "run"
    Trainer(load_config(config_path, [f"out_dir={run}"])).run(progress=False)
    return rows(run), final_tensors(run)


def assert_matches(run, reference) -> None:
    expected_rows, expected = reference
    got_rows = rows(run)
    assert [r["step"] for r in got_rows] == [r["step"] for r in expected_rows]
    for got, want in zip(got_rows, expected_rows, strict=True):
        assert got["tokens"] == want["tokens"] and got["lr"] == want["lr"]
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4)
    tensors = final_tensors(run)
    assert tensors.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(tensors[key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_ddp_on_two_processes_matches_one_process(config_path, reference, tmp_path):
    run = tmp_path / "run"
    torchrun(config_path, f"out_dir={run}", "parallel.strategy=ddp")
    assert_matches(run, reference)


def test_fsdp_resumes_a_one_process_checkpoint_and_matches(
    config_path, reference, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    original = Trainer.train_step

    def stops_at_step_2(self, step):
        if step == 2:
            raise KeyboardInterrupt
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", stops_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        Trainer(load_config(config_path, [f"out_dir={run}"])).run(progress=False)
    assert latest_checkpoint(run).name == "step_00000002"
    torchrun(config_path, f"out_dir={run}", "parallel.strategy=fsdp")
    assert_matches(run, reference)
