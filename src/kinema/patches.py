"""Spacetime patches and NaViT-style Patch n' Pack.

A latent video ``(C, t, h, w)`` is cut into non-overlapping ``(pt, ph, pw)`` patches. Each patch is
one token of ``D = C*pt*ph*pw`` features, laid out ``(c pt ph pw)``; tokens are ordered time-major
``(gt gh gw)`` and carry their integer grid coordinates ``(t, h, w)`` as positions. The transformer
only sees tokens + positions, so resolution, aspect ratio and duration are the data's business.

Packing puts the tokens of many clips of different sizes one after another in a single sequence;
``sample_ids`` says which clip each token belongs to (``-1`` for padding at the end) so attention
can be made block-diagonal (:func:`segment_ranges`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

__all__ = [
    "PAD_ID",
    "Packed",
    "grid_positions",
    "pack_into_budget",
    "pack_sequences",
    "packing_waste",
    "padding_waste",
    "patch_grid",
    "patchify",
    "segment_ranges",
    "unpack",
    "unpatchify",
]

PAD_ID = -1  # sample id of padding tokens

Triple = tuple[int, int, int]


def _check_patch(patch: Triple) -> Triple:
    if len(patch) != 3 or any(int(p) != p or p < 1 for p in patch):
        raise ValueError(f"patch must be three positive ints (pt, ph, pw), got {patch!r}")
    return (int(patch[0]), int(patch[1]), int(patch[2]))


def patch_grid(size: Triple, patch: Triple) -> Triple:
    """``(gt, gh, gw)`` patch grid of a ``(t, h, w)`` latent; ValueError if a size won't divide."""
    patch = _check_patch(patch)
    bad = []
    for axis, n, p in zip("thw", size, patch, strict=True):
        if n % p:
            lower, upper = (n // p) * p, (n // p + 1) * p
            nearest = f"{lower} or {upper}" if lower > 0 else f"{upper}"
            bad.append(f"{axis}={n} is not a multiple of patch {p} (nearest valid: {nearest})")
    if bad:
        raise ValueError(f"latent size {tuple(size)} does not fit patch {patch}: " + "; ".join(bad))
    return (size[0] // patch[0], size[1] // patch[1], size[2] // patch[2])


def grid_positions(grid: Triple, device: torch.device | str | None = None) -> Tensor:
    """Integer ``(t, h, w)`` coordinates of a ``(gt, gh, gw)`` grid, time-major: ``(N, 3)``."""
    axes = [torch.arange(n, device=device) for n in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")  # 3 x (gt, gh, gw)
    return torch.stack([m.reshape(-1) for m in mesh], dim=-1)  # (gt*gh*gw, 3) long


def patchify(latents: Tensor, patch: Triple) -> tuple[Tensor, Tensor]:
    """``(C, t, h, w)`` latents -> tokens ``(N, C*pt*ph*pw)`` and positions ``(N, 3)`` long."""
    pt, ph, pw = _check_patch(patch)
    if latents.ndim != 4:
        raise ValueError(f"latents must be (C, t, h, w), got shape {tuple(latents.shape)}")
    grid = patch_grid(tuple(latents.shape[1:]), (pt, ph, pw))  # type: ignore[arg-type]
    tokens = rearrange(
        latents,
        "c (gt pt) (gh ph) (gw pw) -> (gt gh gw) (c pt ph pw)",
        pt=pt,
        ph=ph,
        pw=pw,
    )  # (N, D)
    return tokens, grid_positions(grid, device=latents.device)


def unpatchify(tokens: Tensor, grid: Triple, channels: int, patch: Triple) -> Tensor:
    """Inverse of :func:`patchify`: tokens ``(N, C*pt*ph*pw)`` -> latents ``(C, t, h, w)``."""
    pt, ph, pw = _check_patch(patch)
    gt, gh, gw = grid
    expected = (gt * gh * gw, channels * pt * ph * pw)
    if tuple(tokens.shape) != expected:
        raise ValueError(
            f"tokens of shape {tuple(tokens.shape)} do not match grid {grid}, channels {channels} "
            f"and patch {patch}; expected {expected}"
        )
    return rearrange(
        tokens,
        "(gt gh gw) (c pt ph pw) -> c (gt pt) (gh ph) (gw pw)",
        gt=gt,
        gh=gh,
        gw=gw,
        c=channels,
        pt=pt,
        ph=ph,
        pw=pw,
    )  # (C, t, h, w)


@dataclass
class Packed:
    """Tokens of several samples in one sequence (NaViT Patch n' Pack)."""

    tokens: Tensor  # (N, D), N = sum(lengths) + pad
    positions: Tensor  # (N, 3) long (t, h, w) grid coordinates; zeros on padding
    sample_ids: Tensor  # (N,) long: sample index, PAD_ID on padding
    lengths: list[int]  # tokens per sample, in order
    grids: list[Triple]  # (gt, gh, gw) per sample, from its positions
    pad: int  # padding tokens appended at the end

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]


def pack_sequences(items: list[tuple[Tensor, Tensor]], pad_to_multiple: int = 1) -> Packed:
    """Concatenate ``(tokens (n_i, D), positions (n_i, 3))`` pairs into one :class:`Packed`."""
    if not items:
        raise ValueError("pack_sequences needs at least one (tokens, positions) item, got none")
    if pad_to_multiple < 1:
        raise ValueError(f"pad_to_multiple must be >= 1, got {pad_to_multiple}")
    dim = items[0][0].shape[-1]
    for i, (tok, pos) in enumerate(items):
        if tok.ndim != 2 or tok.shape[1] != dim or tok.shape[0] == 0:
            shape = tuple(tok.shape)
            raise ValueError(f"item {i}: tokens must be non-empty (n, {dim}), got shape {shape}")
        n = tok.shape[0]
        if tuple(pos.shape) != (n, 3):
            raise ValueError(f"item {i}: positions must be ({n}, 3), got {tuple(pos.shape)}")
    lengths = [tok.shape[0] for tok, _ in items]
    total = sum(lengths)
    pad = (-total) % pad_to_multiple
    first = items[0][0]
    tokens = torch.cat([tok for tok, _ in items] + [first.new_zeros(pad, dim)])  # (N, D)
    pad_positions = torch.zeros(pad, 3, dtype=torch.long, device=first.device)
    positions = torch.cat([pos.long() for _, pos in items] + [pad_positions])  # (N, 3)
    ids = torch.arange(len(items), device=first.device).repeat_interleave(
        torch.tensor(lengths, device=first.device)
    )  # (total,)
    sample_ids = torch.cat([ids, ids.new_full((pad,), PAD_ID)])  # (N,)
    grids = [tuple(int(g) for g in pos.amax(dim=0) + 1) for _, pos in items]
    return Packed(tokens, positions, sample_ids, lengths, grids, pad)  # type: ignore[arg-type]


def unpack(packed: Packed, values: Tensor) -> list[Tensor]:
    """Split per-token ``values (N, ...)`` of a packed sequence back into per-sample tensors."""
    if values.shape[0] != packed.num_tokens:
        raise ValueError(
            f"values have {values.shape[0]} tokens but the packed sequence has {packed.num_tokens}"
        )
    parts = torch.split(values, [*packed.lengths, packed.pad])  # (n_i, ...) each, then padding
    return list(parts[: len(packed.lengths)])


def segment_ranges(sample_ids: Tensor) -> list[tuple[int, int, int]]:
    """Contiguous runs ``(start, end, id)`` of equal ids (end exclusive); padding is its own run."""
    if sample_ids.ndim != 1:
        raise ValueError(f"sample_ids must be 1-D (N,), got shape {tuple(sample_ids.shape)}")
    if sample_ids.numel() == 0:
        return []
    change = torch.nonzero(sample_ids[1:] != sample_ids[:-1]).flatten() + 1  # run starts after 0
    starts = [0, *change.tolist()]
    ends = [*starts[1:], sample_ids.numel()]
    ids = sample_ids[starts].tolist()
    return list(zip(starts, ends, ids, strict=True))


def padding_waste(lengths: list[int], capacity: int) -> float:
    """Fraction of ``capacity`` token slots left unused by sequences of ``lengths``."""
    used = sum(lengths)
    if capacity <= 0 or used > capacity:
        raise ValueError(f"capacity must be positive and >= sum(lengths)={used}, got {capacity}")
    return 1.0 - used / capacity


def pack_into_budget(lengths: list[int], budget: int) -> list[list[int]]:
    """First-fit decreasing: group sample indices into sequences of at most ``budget`` tokens.

    Samples are placed longest first (ties by index) into the first sequence with room; each
    sequence lists its indices in placement order. Deterministic.
    """
    if budget < 1:
        raise ValueError(f"budget must be a positive token count, got {budget}")
    for i, n in enumerate(lengths):
        if not 1 <= n <= budget:
            raise ValueError(f"sample {i} has {n} tokens; valid lengths are 1..{budget} (budget)")
    bins: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        slot = next((b for b, room in enumerate(free) if room >= lengths[i]), None)
        if slot is None:
            bins.append([])
            free.append(budget)
            slot = len(bins) - 1
        bins[slot].append(i)
        free[slot] -= lengths[i]
    return bins


def packing_waste(bins: list[list[int]], lengths: list[int], budget: int) -> float:
    """Padding fraction of :func:`pack_into_budget`'s result: each sequence padded to ``budget``."""
    return padding_waste([lengths[i] for b in bins for i in b], budget * len(bins))
