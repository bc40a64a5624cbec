"""Atomic, resumable training checkpoints in safetensors.

A checkpoint is a folder `step_00001234/` holding `NAME.safetensors` and
`NAME.optimizer.safetensors` for each model (`vae`, `disc`) and `state.json` (step, config,
counters). The folder layout, the atomic write, `latest`, pruning and the refusal of NaN or Inf
weights are those of every Kinema trainer (`kinema.checkpoint_folders`), so `latest` never names a
partial checkpoint. Only safetensors and JSON are ever loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kinema.checkpoint_folders import (
    STATE,
    check_finite,
    cpu_tensors,
    flatten_optimizer_state,
    latest_checkpoint,
    unflatten_optimizer_state,
    write_checkpoint_folder,
)

__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_OPTIMIZER_SEP = "."  # optimizer tensors are named "<param index>.<key>"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    keep: int | None = None,
) -> Path:
    """Write checkpoint `step` under `run_dir/checkpoints/`, point `latest` at it and, with
    `keep`, remove all but `keep` checkpoints (only once `latest` names the new one): the new one
    and the `keep - 1` highest steps of the others. The new one is never removed, even where a
    folder of a higher step was left behind (a write cut off before `latest` moved)."""
    weights = {name: cpu_tensors(model.state_dict()) for name, model in models.items()}
    for name, tensors in weights.items():
        check_finite(tensors, f"checkpoint {step} ({name})")

    def write(tmp: Path) -> None:
        for name, tensors in weights.items():
            save_file(tensors, str(tmp / f"{name}.safetensors"))
        meta = {}
        for name, optimizer in optimizers.items():
            tensors, meta[name] = flatten_optimizer_state(optimizer.state_dict(), _OPTIMIZER_SEP)
            save_file(tensors, str(tmp / f"{name}.optimizer.safetensors"))
        (tmp / STATE).write_text(json.dumps({"step": step, **state, "optimizers": meta}))

    return write_checkpoint_folder(run_dir, step, write, keep)


def load_checkpoint(
    path: str | Path,
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> dict[str, Any]:
    """Restore models and optimizers in place; returns the saved state (step, counters …)."""
    path = Path(path)
    try:
        state = json.loads((path / STATE).read_text())
        for name, model in models.items():
            model.load_state_dict(load_file(str(path / f"{name}.safetensors")))
        for name, optimizer in optimizers.items():
            tensors = load_file(str(path / f"{name}.optimizer.safetensors"))
            meta = state["optimizers"][name]
            optimizer.load_state_dict(
                unflatten_optimizer_state(tensors, meta, _OPTIMIZER_SEP, param_key=int)
            )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"cannot load checkpoint {path}: {e}") from e
    return state
