"""Exponential moving average of the weights, sharded like the weights under FSDP2.

The shadow copy holds one float32 tensor per parameter name. Under FSDP2 the parameters are
DTensors and so are their shadows: every rank averages only its shard, and `full_state` gathers
them (a collective: every rank calls it). Names are the model's own (parallelism is applied
without renaming parameters), so the EMA is also a DiT state dict.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor

__all__ = ["EMA"]


class EMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters()}

    def decay_at(self, step: int) -> float:
        """Warmed-up decay: early steps average over fewer steps, ``min(decay, (1+s)/(10+s))``."""
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1.0 - self.decay_at(step)
        for name, p in model.named_parameters():
            if p.requires_grad:  # a frozen parameter's shadow stays its exact initial value
                self.shadow[name].lerp_(p.detach().float(), weight)

    def full_state(self) -> dict[str, Tensor]:
        """Whole tensors on the CPU (gathers DTensor shards: call on every rank)."""
        return {
            n: (t.full_tensor() if isinstance(t, DTensor) else t).detach().cpu()
            for n, t in self.shadow.items()
        }

    @torch.no_grad()
    def load_full_state(self, tensors: dict[str, Tensor]) -> None:
        """Load whole tensors (from `full_state` or a checkpoint), re-sharding DTensor shadows."""
        missing = sorted(set(self.shadow) - set(tensors))
        unexpected = sorted(set(tensors) - set(self.shadow))
        if missing or unexpected:
            raise ValueError(
                f"EMA state does not match: missing {missing}, unexpected {unexpected}"
            )
        for name, current in self.shadow.items():
            full = tensors[name].float()
            if isinstance(current, DTensor):
                full = full.to(current.device_mesh.device_type)
                current.copy_(distribute_tensor(full, current.device_mesh, current.placements))
            else:
                current.copy_(full.to(current.device))
