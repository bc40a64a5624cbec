"""Building a module whose every tensor is loaded next: without torch.nn.init's random fills.

Layers fill their weights at random when they are built (``nn.Linear`` and ``nn.Conv3d`` call
``torch.nn.init`` in their constructors, the DiT its own initialization after them). A module
about to be loaded from a checkpoint with ``strict=True`` overwrites every one of those tensors,
so the fills are wasted: for the shipped model's two tiny transformers they took 0.4 s of a
1.1 s load. :func:`weights_to_be_loaded` makes them no-ops while the module is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["INIT_FUNCTIONS", "weights_to_be_loaded"]

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
