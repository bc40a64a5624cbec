"""Ending a warmup-stable-decay run by a deadline (kinema.train.deadline and the trainer): the
decay begins when the time left affords no more steps, the run equals one started with the
total it chose, and a resumed run keeps a decay that has begun."""

from __future__ import annotations

import json
import shutil

import pytest

from kinema.train import Trainer, load_config
from kinema.train.checkpoint import latest_checkpoint
from kinema.train.config import ConfigError
from kinema.train.deadline import planned_total, step_rate


def test_planned_total_takes_what_the_time_affords_up_to_the_most():
    # 4,000 done in 4,400 s at 1.1 s a step; 4,600 s left affords 4,181 more
    assert planned_total(4000, 10750, 500, 4400.0, 1.1, 9000.0) == 8181
    assert planned_total(4000, 10750, 500, 4400.0, 1.1, 9000.0, reserve_steps=300) == 7881
    assert planned_total(4000, 6000, 500, 4400.0, 1.1, 9000.0) == 6000  # at most max_steps
    # too little left: the decay still runs whole, from now
    assert planned_total(4000, 10750, 500, 8900.0, 1.1, 9000.0) == 4500
    assert planned_total(4000, 10750, 500, 9500.0, 1.1, 9000.0) == 4500  # past the deadline
    with pytest.raises(ValueError, match="seconds_per_step"):
        planned_total(4000, 10750, 500, 0.0, 0.0, 9000.0)


def test_step_rate_leaves_out_the_warm_up_and_waits_for_enough_steps():
    clock = [(0, 0.0), (1, 10.0)] + [(s, 10.0 + 2.0 * (s - 1)) for s in range(2, 40)]
    assert step_rate(clock[:20], skip=5, least=20) is None
    assert step_rate(clock, skip=5, least=20) == pytest.approx(2.0)  # the slow first step is out


def config(out_dir, *overrides: str):
    base = [
        f"out_dir={out_dir}",
        "steps=1000",
        "checkpoint_every=5",
        "keep_checkpoints=3",
        "log_every=1",
        "threads=1",
        "tensorboard=false",
        "optim.warmup_steps=3",
        "optim.decay_steps=10",
    ]
    return load_config(None, [*base, *overrides], preset="debug")


@pytest.fixture
def one_second_steps(monkeypatch):
    """Every step takes one second of training: the trainer's rate and its time so far."""
    monkeypatch.setattr("kinema.train.trainer.step_rate", lambda clock: 1.0)
    monkeypatch.setattr(Trainer, "train_seconds", lambda self: float(self.step))


def losses(run_dir) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_a_deadline_begins_the_decay_in_time_and_equals_a_run_of_that_length(
    tmp_path, one_second_steps
):
    # 40 s at a second a step, 5 steps kept for work after: the decay begins at 25, ends at 35
    run = Trainer(config(tmp_path / "deadline", "deadline_s=40", "deadline_reserve_steps=5"))
    run.run(progress=False)
    assert (run.step, run.total_steps, run.decay_fixed) == (35, 35, True)
    plain = Trainer(config(tmp_path / "plain", "steps=35"))
    plain.run(progress=False)
    assert losses(tmp_path / "deadline") == losses(tmp_path / "plain")  # the same rates and data
    state = json.loads((latest_checkpoint(tmp_path / "deadline") / "state.json").read_text())
    assert (state["total_steps"], state["decay_fixed"]) == (35, True)

    # resumed after the decay began, the run keeps its length whatever the clock says now
    checkpoints = tmp_path / "deadline" / "checkpoints"
    shutil.rmtree(checkpoints / "step_00000035")
    (checkpoints / "latest").write_text("step_00000030")
    resumed = Trainer(config(tmp_path / "deadline", "deadline_s=1000", "deadline_reserve_steps=5"))
    assert resumed.resume()
    assert (resumed.step, resumed.total_steps, resumed.decay_fixed) == (30, 35, True)


def test_a_deadline_past_the_most_steps_ends_at_them(tmp_path, one_second_steps):
    run = Trainer(config(tmp_path / "run", "steps=20", "deadline_s=1000"))
    run.run(progress=False)
    assert (run.step, run.total_steps) == (20, 20)


def test_a_deadline_needs_a_warmup_stable_decay_schedule(tmp_path):
    with pytest.raises(ConfigError, match="decay_steps"):
        config(tmp_path, "deadline_s=40", "optim.decay_steps=null")
    with pytest.raises(ConfigError, match="deadline_s"):
        config(tmp_path, "deadline_s=0")
