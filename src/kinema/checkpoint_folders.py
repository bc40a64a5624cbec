"""What the DiT and VAE trainers' checkpoints share: the folder layout and how it is written.

A run keeps its checkpoints as ``RUN/checkpoints/step_00001234/`` folders, each holding a
``state.json`` (which marks it complete) beside the trainer's own safetensors files, and a
one-line file ``RUN/checkpoints/latest`` naming the newest. A folder is written under a temporary
name and renamed into place; only then is ``latest`` replaced (atomically), and only then are old
folders beyond `keep` removed, so ``latest`` never names a partial checkpoint. Weights with NaN or
Inf are refused before anything is written. Optimizer state is stored as named tensors
(safetensors) plus JSON metadata, so nothing is ever read back with pickle.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from torch import Tensor

from kinema.atomic import (
    atomic_directory,
    atomic_write_text,
    prune_folders,
    remove_partial_directories,
)

__all__ = [
    "CHECKPOINT_DIR",
    "LATEST",
    "STATE",
    "NonFiniteWeightsError",
    "check_finite",
    "checkpoint_folder",
    "checkpoint_step",
    "cpu_tensors",
    "flatten_optimizer_state",
    "latest_checkpoint",
    "list_checkpoints",
    "resume_message",
    "settings_changed",
    "unflatten_optimizer_state",
    "write_checkpoint_folder",
]

CHECKPOINT_DIR = "checkpoints"  # RUN/checkpoints/ holds the step folders and `latest`
LATEST = "latest"  # one line: the name of the newest complete step folder
STATE = "state.json"  # in every step folder; its presence marks the folder complete


class NonFiniteWeightsError(ValueError):
    """Refused to write weights: some are NaN or infinite."""


def check_finite(tensors: dict[str, Tensor], what: str, shown: int = 5) -> None:
    """Raise `NonFiniteWeightsError` naming (up to `shown` of) the floating-point tensors of
    `tensors` that hold NaN or Inf; `what` names the thing that would have been written."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        more = f" and {len(bad) - shown} more" if len(bad) > shown else ""
        raise NonFiniteWeightsError(
            f"refusing to write {what}: non-finite values in {bad[:shown]}{more}"
        )


def cpu_tensors(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """`tensors` detached, on the CPU and contiguous, as safetensors writes them."""
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def flatten_optimizer_state(state: dict, sep: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """An optimizer state dict as named tensors ``f"{param}{sep}{key}"`` plus JSON metadata
    (param groups and the non-tensor state, such as step counts stored as numbers)."""
    tensors, scalars = {}, {}
    for param, entries in state.get("state", {}).items():
        for key, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"{param}{sep}{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{param}{sep}{key}"] = value
    return tensors, {"param_groups": state.get("param_groups", []), "scalars": scalars}


def unflatten_optimizer_state(
    tensors: dict[str, Tensor],
    meta: dict[str, Any],
    sep: str,
    param_key: Callable[[str], Hashable] = str,
) -> dict:
    """The inverse of `flatten_optimizer_state`: each name is split at its last `sep` (state keys
    such as ``exp_avg`` never hold one) and its parameter part converted with `param_key` (``int``
    for ``optimizer.state_dict()`` indices)."""
    state: dict[Hashable, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        param, key = flat.rsplit(sep, 1)
        state.setdefault(param_key(param), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def checkpoint_folder(run_dir: str | os.PathLike[str], step: int) -> Path:
    """``RUN/checkpoints/step_00001234`` for step 1234."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}"


def checkpoint_step(folder: str | os.PathLike[str]) -> int:
    """The step a checkpoint folder holds, from its name (`checkpoint_folder`'s inverse)."""
    return int(Path(folder).name.removeprefix("step_"))


def write_checkpoint_folder(
    run_dir: str | os.PathLike[str],
    step: int,
    write: Callable[[Path], None],
    keep: int | None = None,
) -> Path:
    """Write checkpoint `step`: `write(tmp)` fills an empty temporary folder (it must write
    ``state.json``), which then replaces ``step_N/`` whole (the same step written again included);
    then `latest` names it and only then, with `keep`, all but `keep` complete checkpoints are
    removed: the new one and the `keep - 1` highest steps of the others. The new one is never
    removed, even where a folder of a higher step was left behind. A failed `write` leaves every
    folder and `latest` as they were."""
    final = checkpoint_folder(run_dir, step)
    remove_partial_directories(final)  # of a write of this step killed mid-way
    with atomic_directory(final) as tmp:
        write(tmp)
    atomic_write_text(final.parent / LATEST, final.name + "\n")
    if keep is not None:
        prune_folders(list_checkpoints(run_dir), final, keep)
    return final


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint folders (those with ``state.json``), oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / STATE).is_file())


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The folder `latest` names, or None before the first checkpoint; ValueError where `latest`
    names a folder that is not a complete checkpoint."""
    pointer = Path(run_dir) / CHECKPOINT_DIR / LATEST
    if not pointer.is_file():
        return None
    path = pointer.parent / pointer.read_text().strip()
    if not (path / STATE).is_file():
        raise ValueError(
            f"{pointer} names {path.name}, which is not a complete checkpoint; write the name of "
            f"a complete step_N folder into it to resume from there, or remove it to start over"
        )
    return path


_ABSENT = "(absent)"


def _plain(value: Any) -> Any:
    """`value` as JSON gives it back (tuples become lists), so saved and live configs compare."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def settings_changed(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: old → new`` for every setting whose value differs between the config a checkpoint
    was written with and the config resuming from it, nested sections by dotted key
    (``optim.lr: 0.002 → 0.001``); a key only one side has shows as ``(absent)`` there."""

    def walk(old: Any, new: Any, prefix: str) -> list[str]:
        if isinstance(old, dict) and isinstance(new, dict):
            return [
                line
                for key in [*new, *(k for k in old if k not in new)]
                for line in walk(old.get(key, _ABSENT), new.get(key, _ABSENT), prefix + key + ".")
            ]
        if old == new:
            return []
        show = [v if v is _ABSENT else json.dumps(v) for v in (old, new)]
        return [f"{prefix[:-1]}: {show[0]} → {show[1]}"]

    return walk(_plain(saved), _plain(current), "")


def resume_message(
    step: int,
    state: dict[str, Any],
    config: dict[str, Any],
    lr: float | None = None,
    checkpoint: Path | None = None,
) -> str:
    """What a trainer says when it resumes: the step (and `checkpoint` folder), the settings
    changed since the checkpoint was written (its ``state["config"]``) and, where they move it,
    the learning rate the checkpoint's schedule had for the next step (``state["lr"]``) against
    `lr`, the one it now gets (so a longer or shorter ``steps`` reshaping the schedule is never
    silent)."""
    line = f"resumed from step {step}" + (f" ({checkpoint})" if checkpoint else "")
    changes = settings_changed(state.get("config", {}), config)
    if changes:
        line += "; changed since that checkpoint: " + ", ".join(changes)
        saved_lr = state.get("lr")
        if lr is not None and saved_lr is not None and not math.isclose(saved_lr, lr):
            line += f"; learning rate {saved_lr:.3g} → {lr:.3g} from here"
    return line
