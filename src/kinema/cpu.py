"""What the CPU can do, from its feature flags, for choices that depend on the instruction set.

    cpu_flags()   # frozenset({"avx2", "avx512f", "avx512_bf16", ...}) on Linux; empty elsewhere

`kinema.precision` reads it for bf16 autocast, and `kinema.video` for x264's instruction set.
"""

from __future__ import annotations

import functools
from pathlib import Path

__all__ = ["cpu_flags"]


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()
