"""Atomic, resumable, portable DiT training checkpoints.

``OUT/checkpoints/step_00001000/`` holds::

    model.safetensors       the weights (whole tensors, the DiT's own names)
    ema.safetensors         the EMA weights
    optimizer.safetensors   AdamW moments and step counts, keyed "<param name>/<key>"
    state.json              step, counters, data stats, RNG states of every rank, optimizer
                            param groups, the resolved config

A checkpoint is written into a temporary folder and renamed into place; then ``latest`` (a
one-line file naming the folder) is replaced atomically, and only then are old checkpoints beyond
`keep` removed. So ``latest`` never names a partial checkpoint, and a failed write leaves it on the
previous one. Non-finite weights are never written. Only safetensors and JSON are read back.

State dicts are gathered whole (torch.distributed.checkpoint.state_dict with
``full_state_dict=True``): under FSDP2 rank 0 writes the full tensors, and any number of ranks can
load them, so a checkpoint moves freely between 1 and N processes and between DDP and FSDP.
"""

from __future__ import annotations

import json
import os
import random
import shutil
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

from kinema.atomic import prune_folders

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

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors on rank 0
_LOAD = StateDictOptions(full_state_dict=True)  # every rank passes whole tensors; FSDP re-shards


class NonFiniteWeightsError(ValueError):
    """Refused to write a checkpoint: some weights are NaN or infinite."""


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


def flatten_optimizer_state(state: dict) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Named tensors (``"<param>/<key>"``) plus JSON metadata (param groups, non-tensor state)."""
    tensors, scalars = {}, {}
    for name, entries in state.get("state", {}).items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{name}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{name}/{key}"] = value
    return tensors, {"param_groups": state.get("param_groups", []), "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict:
    state: dict[str, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        name, key = flat.rsplit("/", 1)
        state.setdefault(name, {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


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


def _non_finite(tensors: dict[str, Tensor]) -> list[str]:
    return [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]


def check_finite(*state_dicts: dict[str, Tensor]) -> None:
    bad = [k for sd in state_dicts for k in _non_finite(sd)]
    if bad:
        raise NonFiniteWeightsError(
            f"refusing to write a checkpoint: non-finite values in {bad[:5]}"
            + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        )


def _contiguous(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def write_checkpoint(
    run_dir: str | Path,
    step: int,
    model: dict[str, Tensor],
    ema: dict[str, Tensor],
    optimizer: dict,
    state: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint `step` atomically, point `latest` at it, keep it and `keep - 1` others."""
    check_finite(model, ema)
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file(_contiguous(model), str(tmp / "model.safetensors"))
        save_file(_contiguous(ema), str(tmp / "ema.safetensors"))
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        meta = {"step": step, **state, "optimizer": opt_meta}
        (tmp / "state.json").write_text(json.dumps(meta))
        if final.exists():  # the same step written again (a rerun): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / f".{LATEST}.tmp"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, root / LATEST)
    prune_folders(list_checkpoints(run_dir), final, keep)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / "state.json").is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder `latest` names, or None before the first checkpoint."""
    pointer = Path(run_dir) / CHECKPOINT_DIR / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / "state.json").is_file():
        raise ValueError(f"{pointer} names {path.name}, which is not a complete checkpoint")
    return path


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint folder (safetensors and JSON only)."""
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        model = load_file(str(path / "model.safetensors"))
        ema = load_file(str(path / "ema.safetensors"))
        opt_tensors = load_file(str(path / "optimizer.safetensors"))
        optimizer = unflatten_optimizer_state(opt_tensors, state.pop("optimizer"))
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
