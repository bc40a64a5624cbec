"""Whether bfloat16 autocast pays on a device, for configs that say ``bf16: auto``.

bf16 autocast speeds up a device that computes bf16 natively and slows down one that emulates
it, and on CPUs by a lot: the CPU the shipped model trained on ran the tiny DiT's step about
twice as fast in bf16, and a CPU with AVX2 alone (no AVX-512) ran it 25 times slower
(docs/benchmarks.md, "bf16 autocast on a CPU without native bf16"). So the presets ask for
``"auto"``: bf16 where it is native, float32 elsewhere.

    resolve_bf16("auto", torch.device("cpu"))   # True on a CPU with avx512_bf16 or amx_bf16
    resolve_bf16(True, device)                  # True: asked for, whatever it costs
"""

from __future__ import annotations

import torch

from kinema.cpu import cpu_flags

__all__ = ["AUTO", "check_bf16", "native_bf16", "resolve_bf16"]

AUTO = "auto"
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU whose
    flags name AVX512-BF16 or AMX-BF16. Elsewhere False, so "auto" stays in float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_flags() & CPU_BF16_FLAGS)
    return False


def check_bf16(value: object, name: str = "bf16") -> bool | str:
    """`value` if it is true, false or "auto", else a ValueError naming it and those three."""
    if isinstance(value, bool) or value == AUTO:
        return value  # type: ignore[return-value]
    raise ValueError(f"{name} must be true, false or {AUTO!r}, got {value!r}")


def resolve_bf16(value: bool | str, device: torch.device | str) -> bool:
    """Whether to run bf16 autocast on `device` for a config value true, false or "auto"."""
    value = check_bf16(value)
    return native_bf16(device) if value == AUTO else bool(value)
