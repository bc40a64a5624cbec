"""Atomic, resumable, portable DiT training checkpoints.

``OUT/checkpoints/step_00001000/`` holds::

    model.safetensors       the weights (whole tensors, the DiT's own names)
    ema.safetensors         the EMA weights
    optimizer.safetensors   AdamW moments and step counts, keyed "<param name>/<key>"
    state.json              step, counters, data stats, RNG states of every rank, optimizer
                            param groups, the resolved config

The folder layout, the atomic write, ``latest``, pruning beyond `keep` and the refusal of
non-finite weights are those of every Kinema trainer (`kinema.checkpoint_folders`): ``latest``
never names a partial checkpoint, and a failed write leaves it on the previous one. Only
safetensors and JSON are read back.

State dicts are gathered whole (torch.distributed.checkpoint.state_dict with
``full_state_dict=True``): under FSDP2 rank 0 writes the full tensors, and any number of ranks can
load them, so a checkpoint moves freely between 1 and N processes and between DDP and FSDP.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from kinema.checkpoint_folders import (
    CHECKPOINT_DIR,
    STATE,
    NonFiniteWeightsError,
    check_finite,
    cpu_tensors,
    flatten_optimizer_state,
    latest_checkpoint,
    list_checkpoints,
    unflatten_optimizer_state,
    write_checkpoint_folder,
)

__all__ = [
    "Checkpoint",
    "NonFiniteWeightsError",
    "gather_model_state",
    "gather_optimizer_state",
    "get_rng_state",
    "initial_weights",
    "latest_checkpoint",
    "list_checkpoints",
    "load_initial_weights",
    "load_model_state",
    "load_optimizer_state",
    "read_checkpoint",
    "set_rng_state",
    "write_checkpoint",
]

_OPTIMIZER_SEP = "/"  # optimizer tensors are named "<param name>/<key>"
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors on rank 0
_LOAD = StateDictOptions(full_state_dict=True)  # every rank passes whole tensors; FSDP re-shards


# --------------------------------------------------------------------------------------------
# Whole state dicts (collectives: every rank calls them)
# --------------------------------------------------------------------------------------------


def gather_model_state(model: nn.Module) -> dict[str, Tensor]:
    """Whole CPU tensors on rank 0 (other ranks of an FSDP model get an empty dict)."""
    return get_model_state_dict(model, options=_GATHER)


def gather_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state keyed by parameter names, whole tensors on rank 0."""
    return get_optimizer_state_dict(model, optimizer, options=_GATHER)


def load_model_state(model: nn.Module, tensors: dict[str, Tensor]) -> None:
    set_model_state_dict(model, tensors, options=_LOAD)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    set_optimizer_state_dict(model, optimizer, state, options=_LOAD)


# --------------------------------------------------------------------------------------------
# RNG states (JSON-able)
# --------------------------------------------------------------------------------------------


def get_rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, numpy and Python RNG states."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state().tolist(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state().tolist()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8))


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    path: Path
    step: int
    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    optimizer: dict  # torch.distributed.checkpoint optimizer state dict (names as keys)
    state: dict[str, Any]  # state.json


def write_checkpoint(
    run_dir: str | Path,
    step: int,
    model: dict[str, Tensor],
    ema: dict[str, Tensor],
    optimizer: dict,
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, keep it and `keep - 1` others.
    Non-finite weights (model or EMA) raise `NonFiniteWeightsError` before anything is written."""
    check_finite(model, f"checkpoint {step} (model)")
    check_finite(ema, f"checkpoint {step} (EMA)")

    def write(tmp: Path) -> None:
        save_file(cpu_tensors(model), str(tmp / "model.safetensors"))
        save_file(cpu_tensors(ema), str(tmp / "ema.safetensors"))
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer, _OPTIMIZER_SEP)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        meta = {"step": step, **state, "optimizer": opt_meta}
        (tmp / STATE).write_text(json.dumps(meta))

    return write_checkpoint_folder(run_dir, step, write, keep)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint folder (safetensors and JSON only)."""
    path = Path(path)
    try:
        state = json.loads((path / STATE).read_text())
        model = load_file(str(path / "model.safetensors"))
        ema = load_file(str(path / "ema.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
        optimizer = unflatten_optimizer_state(opt_tensors, state.pop("optimizer"), _OPTIMIZER_SEP)
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
    return Checkpoint(path, int(state["step"]), model, ema, optimizer, state)


def initial_weights(path: str | Path) -> dict[str, Tensor]:
    """DiT weights to start a new run from (``model.init_from``).

    ``path`` is a run folder (the EMA of its latest checkpoint), a checkpoint folder (its EMA),
    or an exported model folder (its ``transformer/``) or DiT folder.
    """
    path = Path(path)
    if (path / CHECKPOINT_DIR).is_dir():
        checkpoint = latest_checkpoint(path)
        if checkpoint is None:
            raise ValueError(f"model.init_from: run folder {path} has no complete checkpoint")
        path = checkpoint
    candidates = [
        path / "ema.safetensors",
        path / "transformer" / "model.safetensors",
        path / "model.safetensors",
    ]
    file = next((c for c in candidates if c.is_file()), None)
    if file is None:
        raise ValueError(
            f"model.init_from: {path} is not a run, checkpoint or model folder "
            f"(none of {', '.join(str(c.relative_to(path)) for c in candidates)})"
        )
    try:
        return load_file(str(file))
    except (OSError, SafetensorError) as e:
        raise ValueError(f"model.init_from: cannot read {file}: {e}") from e


def load_initial_weights(model: nn.Module, tensors: dict[str, Tensor]) -> list[str]:
    """Copy `tensors` into `model` (before any parallel wrapping); returns the names of the
    model's parameters that `tensors` lacks, which keep their initial values (a part the new
    model adds, such as a zero-initialized pooled-text path). Unknown names and shape mismatches
    raise `ValueError` naming them."""
    own = model.state_dict()
    unexpected = sorted(set(tensors) - set(own))
    mismatched = [
        f"{k} {tuple(v.shape)} (model: {tuple(own[k].shape)})"
        for k, v in tensors.items()
        if k in own and v.shape != own[k].shape
    ]
    if unexpected or mismatched:
        parts = [f"unknown tensors {_few(unexpected)}"] if unexpected else []
        parts += [f"other shapes {_few(mismatched)}"] if mismatched else []
        raise ValueError("model.init_from does not fit this model: " + "; ".join(parts))
    with torch.no_grad():
        for name, value in tensors.items():
            own[name].copy_(value.to(own[name].dtype))
    return sorted(set(own) - set(tensors))


def _few(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
