"""The checkpoint folders both trainers share (atomic step folders, `latest`, keep-K, refusals,
optimizer state as tensors + JSON, what a resume says changed) and the JSON Lines reader both
manifest readers share."""

from __future__ import annotations

import json

import pytest
import torch

from kinema.checkpoint_folders import (
    NonFiniteWeightsError,
    check_finite,
    checkpoint_step,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    resume_message,
    settings_changed,
    unflatten_optimizer_state,
    write_checkpoint_folder,
)
from kinema.jsonl import read_json_objects


def write_state(step: int):
    def write(tmp):
        (tmp / "state.json").write_text(json.dumps({"step": step}))

    return write


def test_step_folders_latest_and_keep(tmp_path):
    for step in (1, 2, 3):
        path = write_checkpoint_folder(tmp_path, step, write_state(step), keep=2)
    assert path == tmp_path / "checkpoints" / "step_00000003"
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_00000003\n"
    assert latest_checkpoint(tmp_path) == path and checkpoint_step(path) == 3
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]


def test_a_failed_or_killed_write_leaves_latest_and_no_partial_folder(tmp_path):
    write_checkpoint_folder(tmp_path, 1, write_state(1))

    def failing(tmp):
        (tmp / "weights.bin").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_checkpoint_folder(tmp_path, 2, failing)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000001"]
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    (root / ".step_00000002.tmp-killed").mkdir()  # a write of step 2 killed mid-way
    write_checkpoint_folder(tmp_path, 2, write_state(2))
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000001", "step_00000002"]


def test_latest_naming_a_partial_folder_is_an_error(tmp_path):
    path = write_checkpoint_folder(tmp_path, 4, write_state(4))
    (path / "state.json").unlink()
    with pytest.raises(ValueError, match="names step_00000004, which is not a complete"):
        latest_checkpoint(tmp_path)


def test_check_finite_names_the_bad_tensors():
    tensors = {f"w{i}": torch.full((2,), float("nan")) for i in range(7)}
    tensors["steps"] = torch.tensor([1, 2])  # integers are never non-finite
    with pytest.raises(NonFiniteWeightsError, match=r"checkpoint 9: .*\['w0', .*'w4'\] and 2 more"):
        check_finite(tensors, "checkpoint 9")
    check_finite({"ok": torch.zeros(3), "steps": torch.tensor([1])}, "checkpoint 9")


@pytest.mark.parametrize(("sep", "param_key"), [("/", str), (".", int)])
def test_optimizer_state_round_trips(sep, param_key):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    if param_key is str:  # named parameters, as torch.distributed.checkpoint keys them
        state = {**state, "state": {f"layer.{k}": v for k, v in state["state"].items()}}
    tensors, meta = flatten_optimizer_state(state, sep)
    assert all(sep in name for name in tensors)
    back = unflatten_optimizer_state(tensors, json.loads(json.dumps(meta)), sep, param_key)
    assert back["param_groups"] == json.loads(json.dumps(state["param_groups"]))
    assert back["state"].keys() == state["state"].keys()
    for param, entries in state["state"].items():
        for key, value in entries.items():
            assert torch.equal(torch.as_tensor(back["state"][param][key]), torch.as_tensor(value))


def test_read_json_objects_names_the_bad_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"a": 1}\n\n{"b": "é"}\n')
    assert list(read_json_objects(path)) == [(f"{path}:1", {"a": 1}), (f"{path}:3", {"b": "é"})]
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2: expected a JSON object, got list"):
        list(read_json_objects(path))
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"m\.jsonl:2: not valid JSON"):
        list(read_json_objects(path))


def test_settings_changed_names_each_difference_by_dotted_key():
    saved = {"steps": 2400, "sizes": [[64, 64]], "optim": {"lr": 0.002, "betas": [0.9, 0.99]}}
    current = {"steps": 900, "sizes": ((64, 64),), "optim": {"lr": 0.002, "betas": (0.9, 0.95)}}
    # tuples of the live config equal the lists JSON gave back: only real changes are named
    assert settings_changed(saved, current) == [
        "steps: 2400 → 900",
        "optim.betas: [0.9, 0.99] → [0.9, 0.95]",
    ]
    assert settings_changed(saved, json.loads(json.dumps(saved))) == []
    # a key that only one side has (another version of Kinema wrote the checkpoint)
    assert settings_changed({"a": 1, "old": "x"}, {"a": 1, "new": None}) == [
        "new: (absent) → null",
        'old: "x" → (absent)',
    ]


def test_resume_message_gives_the_learning_rate_only_when_settings_moved_it():
    state = {"step": 630, "lr": 1.7e-4, "config": {"steps": 2400, "lr": 2e-4}}
    same = resume_message(630, state, {"steps": 2400, "lr": 2e-4}, lr=1.7e-4)
    assert same == "resumed from step 630"
    shorter = resume_message(630, state, {"steps": 900, "lr": 2e-4}, lr=4.6e-5, checkpoint="c")
    assert shorter == (
        "resumed from step 630 (c); changed since that checkpoint: steps: 2400 → 900; "
        "learning rate 0.00017 → 4.6e-05 from here"
    )
    # a checkpoint written before learning rates were saved: the settings alone
    assert resume_message(3, {"config": {"steps": 4}}, {"steps": 5}, lr=1.0).endswith(
        "steps: 4 → 5"
    )
