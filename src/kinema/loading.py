"""Loading a module from a ``config.json`` + ``model.safetensors`` folder, and building it first
without torch.nn.init's random fills.

:func:`checkpoint_paths`, :func:`read_checkpoint_config`, :func:`read_tensors` and
:func:`build_loaded` are the steps the VAE's and the transformer's loaders share; each raises an
error that names the file at fault.

Layers fill their weights at random when they are built (``nn.Linear`` and ``nn.Conv3d`` call
``torch.nn.init`` in their constructors, the DiT its own initialization after them). A module
about to be loaded from a checkpoint with ``strict=True`` overwrites every one of those tensors,
so the fills are wasted: for the shipped model's two tiny transformers they took 0.4 s of a
1.1 s load. :func:`weights_to_be_loaded` makes them no-ops while the module is built.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

__all__ = [
    "CONFIG_NAME",
    "INIT_FUNCTIONS",
    "WEIGHTS_NAME",
    "build_loaded",
    "checkpoint_paths",
    "read_checkpoint_config",
    "read_tensors",
    "weights_to_be_loaded",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
M = TypeVar("M", bound=torch.nn.Module)
C = TypeVar("C")  # a parsed config

# the torch.nn.init functions that layers call to fill their tensors when they are built
INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "zeros_",
    "ones_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
)


def _leave(tensor: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    return tensor


@contextmanager
def weights_to_be_loaded() -> Iterator[None]:
    """Modules built inside skip torch.nn.init's fills (their tensors hold whatever memory held):
    only for a module that ``load_state_dict(..., strict=True)`` fills next, every parameter and
    buffer it has being in its state dict. The switch is process-wide for the ``with`` block: a
    module another thread builds meanwhile skips its fills too."""
    saved = {name: getattr(torch.nn.init, name) for name in INIT_FUNCTIONS}
    try:
        for name in INIT_FUNCTIONS:
            setattr(torch.nn.init, name, _leave)
        yield
    finally:
        for name, function in saved.items():
            setattr(torch.nn.init, name, function)


def checkpoint_paths(directory: str | Path, what: str) -> tuple[Path, Path]:
    """(config.json, model.safetensors) of a checkpoint folder; FileNotFoundError if one is
    missing, naming it and `what` the folder should hold ("VAE", "DiT")."""
    directory = Path(directory)
    paths = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{what} checkpoint file not found: {path}")
    return paths


def read_checkpoint_config(config_path: Path, kind: str, what: str, parse: Callable[[Any], C]) -> C:
    """``parse(meta["config"])`` of a config.json whose ``kind`` is `kind`; a ValueError naming
    the file for bad JSON, another kind, or a config `parse` rejects."""
    try:
        meta = json.loads(config_path.read_text())
        if meta.get("kind") != kind:
            raise ValueError(f"kind is {meta.get('kind')!r}, expected {kind!r}")
        return parse(meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"invalid {what} config {config_path}: {e}") from e


def read_tensors(weights_path: Path, device: torch.device | str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a ValueError naming it if it is corrupt or unreadable."""
    try:
        return load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"corrupt or unreadable safetensors file {weights_path}: {e}") from e


def build_loaded(
    build: Callable[[], M],
    tensors: dict[str, torch.Tensor],
    weights_path: Path,
    config_path: Path,
) -> M:
    """``build()`` without random fills, then every tensor of `tensors` loaded into it (strict);
    a ValueError naming both files if they do not match. Returned in eval mode."""
    with weights_to_be_loaded():
        model = build()
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{weights_path} does not match {config_path}: {e}") from e
    return model.eval()
