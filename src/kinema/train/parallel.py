"""Parallelism, activation checkpointing and compilation, applied to a DiT from outside.

The model file never mentions any of this (torchtitan's `parallelize` style). The order is
activation checkpointing -> compile -> FSDP2 (or DDP), each per transformer block. None of these
renames a parameter (composable checkpointing, in-place `Module.compile`, `fully_shard` on the
modules themselves), so state dicts and the EMA keep the DiT's own names; DDP's wrapper is only
used to call the model.

Launch with ``torchrun --nproc_per_node N``: `init_distributed` reads its environment (RANK,
WORLD_SIZE, LOCAL_RANK) and joins a gloo group on CPU or an NCCL group on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor, nn

from kinema.precision import resolve_bf16
from kinema.train.config import ParallelConfig, Strategy
from kinema.transformer import DiT

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "all_reduce_sum",
    "apply_activation_checkpointing",
    "apply_compile",
    "apply_ddp",
    "apply_fsdp",
    "barrier",
    "broadcast_flag",
    "destroy_distributed",
    "init_distributed",
    "parallelize",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group torchrun describes (a no-op for a single plain process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    return DistInfo(rank, world_size, local_rank, device)


def destroy_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# Applied to the model, in this order
# --------------------------------------------------------------------------------------------


def apply_activation_checkpointing(model: DiT) -> None:
    """Recompute every block's activations in the backward pass (composable: names unchanged)."""
    from torch.distributed._composable import checkpoint

    for block in model.blocks:
        checkpoint(block)


def apply_compile(model: DiT) -> None:
    """torch.compile each block in place, with dynamic shapes (sequence lengths vary)."""
    for block in model.blocks:
        block.compile(dynamic=True)  # packed sequences change length every step


def apply_fsdp(model: DiT, bf16: bool) -> None:
    """FSDP2: shard every block, then the root (embedders, final layer). On CUDA with `bf16`,
    blocks compute in bf16 and reduce gradients in fp32; on the CPU parameters stay fp32 (use
    autocast there)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy()
    if bf16 and torch.cuda.is_available():
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def apply_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Replicate and all-reduce gradients; returns the wrapper to call (the module is shared)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def parallelize(model: DiT, config: ParallelConfig, info: DistInfo) -> nn.Module:
    """Apply checkpointing, compile and the strategy; returns the module to call for forward."""
    if info.distributed and config.strategy == Strategy.NONE:
        raise ValueError(
            f"running {info.world_size} processes with parallel.strategy none; set "
            "parallel.strategy to ddp or fsdp"
        )
    if config.activation_checkpointing:
        apply_activation_checkpointing(model)
    if config.compile:
        apply_compile(model)
    if info.distributed and config.strategy == Strategy.FSDP:
        apply_fsdp(model, resolve_bf16(config.bf16, info.device))
    if info.distributed and config.strategy == Strategy.DDP:
        return apply_ddp(model, info.device)
    return model


# --------------------------------------------------------------------------------------------
# Small collectives (each a no-op in one process)
# --------------------------------------------------------------------------------------------


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over ranks (float64)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_tensor(t: Tensor) -> Tensor:
    """Sum of a tensor over ranks (a new tensor)."""
    t = t.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


def all_gather_objects(obj: object) -> list[object]:
    """Every rank's picklable object, in rank order."""
    if not dist.is_initialized():
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's boolean, on every rank."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
