"""Atomic, resumable training checkpoints in safetensors.

A checkpoint is a folder `step_00001234/` holding `NAME.safetensors` and
`NAME.optimizer.safetensors` for each model (`vae`, `disc`) and `state.json` (step, config,
counters). It is written to a temporary folder and renamed, and
`latest` (a one-line file) is replaced atomically afterwards, so `latest` never names a partial
checkpoint. Weights with NaN or Inf are refused. Only safetensors and JSON are ever loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kinema.atomic import atomic_directory, prune_folders


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as named tensors plus JSON metadata (param groups, scalar state)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


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
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:08d}"
    weights = {}
    for name, model in models.items():
        weights[name] = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        bad = [
            k
            for k, v in weights[name].items()
            if v.is_floating_point() and not torch.isfinite(v).all()
        ]
        if bad:
            raise ValueError(f"refusing to save checkpoint {step}: non-finite weights in {bad[:3]}")
    # the folder appears whole or not at all; the same step written again replaces it
    with atomic_directory(final) as tmp:
        for name, tensors in weights.items():
            save_file(tensors, str(tmp / f"{name}.safetensors"))
        meta = {}
        for name, optimizer in optimizers.items():
            tensors, meta[name] = _flatten_optimizer(optimizer)
            save_file(tensors, str(tmp / f"{name}.optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step, **state, "optimizers": meta}))
    latest_tmp = root / ".latest.tmp"
    latest_tmp.write_text(final.name + "\n")
    os.replace(latest_tmp, root / "latest")
    if keep is not None:
        complete = sorted(p for p in root.glob("step_*") if (p / "state.json").is_file())
        prune_folders(complete, final, keep)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder `latest` names, or None before the first checkpoint."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise ValueError(
            f"{pointer} names {path.name}, which is not a complete checkpoint; write the name of "
            f"a complete step_N folder into it to resume from there, or remove it to start over"
        )
    return path


def load_checkpoint(
    path: str | Path,
    models: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
) -> dict[str, Any]:
    """Restore models and optimizers in place; returns the saved state (step, counters …)."""
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        for name, model in models.items():
            model.load_state_dict(load_file(str(path / f"{name}.safetensors")))
        for name, optimizer in optimizers.items():
            tensors = load_file(str(path / f"{name}.optimizer.safetensors"))
            optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizers"][name]))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise ValueError(f"cannot load checkpoint {path}: {e}") from e
    return state
