"""Layers of Kinema's diffusion transformer over packed spacetime tokens.

One packed sequence holds the tokens of several samples (clips or images of any size) one after
another, NaViT-style ("Patch n' Pack"). Every token carries a sample id (``-1`` for padding), and
attention never crosses samples: a video token attends to the video tokens of its own sample
(self-attention) and to the text tokens of its own sample (cross-attention). Tensors have no batch
dimension: ``(N, hidden)`` for tokens, ``(N, heads, head_dim)`` inside attention.

Contents, in reading order: the attention backends and the packed segment mask, 3D rotary position
embedding, norms and modulation, attention modules, MLP, timestep and text embedders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

__all__ = [
    "MLP",
    "TIMESTEP_FREQUENCY_DIM",
    "TIMESTEP_SCALE",
    "AttentionBackend",
    "CrossAttention",
    "RMSNorm",
    "SegmentMask",
    "SelfAttention",
    "TextEmbedder",
    "TimestepEmbedder",
    "apply_rope",
    "batched_attention",
    "explicit_attention",
    "make_segment_mask",
    "modulate",
    "rope_angles",
    "segment_attention",
    "split_rope_dims",
    "timestep_embedding",
]

TIMESTEP_SCALE = 1000.0  # timesteps in [0, 1] are embedded as t * 1000, as in DiT
TIMESTEP_FREQUENCY_DIM = 256  # width of the sinusoidal timestep embedding


# ------------------------------------------------------------------------------------------------
# Attention over packed segments
# ------------------------------------------------------------------------------------------------


class AttentionBackend(StrEnum):
    """How attention is restricted to tokens of the same sample.

    All three compute the same thing: query ``i`` attends to key ``j`` iff both carry the same
    sample id and that id is not ``-1``; a query with no such key (padding, or a sample without
    text) gets a zero output.
    """

    # Loop over the contiguous runs of each sample and call F.scaled_dot_product_attention once per
    # run, with that sample's keys. No mask is built; works everywhere, eager and with autograd.
    # torch.compile sees one Python loop per layout (a new layout re-traces), so compile with FLEX.
    SDPA_SEGMENTS = "sdpa_segments"
    # torch.nn.attention.flex_attention with a block-sparse mask built from the sample ids. Fast
    # only under torch.compile (compile the blocks from outside; the masks are built eagerly in
    # DiT.forward); eager runs an unfused reference that materializes the scores. On CPU (torch
    # 2.13) flex_attention has no backward, eager or compiled: train on CPU with SDPA_SEGMENTS.
    FLEX = "flex"
    # Reference only: an explicit (Nq, Nk) boolean mask and a plain softmax. For tests on small N.
    DENSE_MASK = "dense_mask"


@dataclass
class SegmentMask:
    """Who attends to whom in a packed sequence: query i sees key j iff q_ids[i] == k_ids[j] >= 0.

    Built once per forward pass (:func:`make_segment_mask`) and shared by every block.
    """

    backend: AttentionBackend  # the backend this mask was built for
    q_ids: Tensor  # (Nq,) long, sample id of each query token, -1 for padding
    k_ids: Tensor  # (Nk,) long, sample id of each key token, -1 for padding
    q_runs: list[tuple[int, int, int]]  # (start, end, id) contiguous runs of q_ids covering [0, Nq)
    k_spans: dict[int, tuple[int, int]]  # sample id -> (start, end) of its keys (ids >= 0 only)
    block_mask: BlockMask | None = None  # FLEX only
    groups: list[SegmentGroup] = field(default_factory=list)  # SDPA_SEGMENTS only
    # SDPA_SEGMENTS only: (Nq,) row of each query in the groups' outputs, concatenated in order
    # and followed by one zero row per query without keys
    order: Tensor | None = None


@dataclass
class SegmentGroup:
    """Samples whose queries and keys have the same lengths, attended to in one batched call."""

    q_rows: Tensor  # (G * n,) long, the rows of the G samples' queries, sample after sample
    k_rows: Tensor  # (G * m,) long, the rows of their keys
    samples: int  # G
    q_len: int  # n
    k_len: int  # m


def _segment_groups(
    q_runs: list[tuple[int, int, int]], k_spans: dict[int, tuple[int, int]], device: torch.device
) -> tuple[list[SegmentGroup], Tensor]:
    """Group the runs by (query length, key length), and where each query lands in the output."""
    by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
    empty: list[int] = []
    for start, end, sample in q_runs:
        span = k_spans.get(sample)  # padding (-1) and samples without keys have no span
        if span is None or span[1] == span[0]:
            empty.extend(range(start, end))
            continue
        by_shape.setdefault((end - start, span[1] - span[0]), []).append((start, span[0]))
    groups, rows = [], []
    for (n, m), starts in by_shape.items():
        q_starts = torch.tensor([q for q, _ in starts], dtype=torch.long)
        k_starts = torch.tensor([k for _, k in starts], dtype=torch.long)
        q_rows = (q_starts[:, None] + torch.arange(n)).flatten()  # (G * n,)
        k_rows = (k_starts[:, None] + torch.arange(m)).flatten()  # (G * m,)
        groups.append(SegmentGroup(q_rows.to(device), k_rows.to(device), len(starts), n, m))
        rows.append(q_rows)
    rows.append(torch.tensor(empty, dtype=torch.long))
    concatenated = torch.cat(rows)  # (Nq,) query row of each output row
    order = torch.empty_like(concatenated)
    order[concatenated] = torch.arange(concatenated.numel())
    return groups, order.to(device)


def _contiguous_runs(ids: Tensor, name: str) -> list[tuple[int, int, int]]:
    """Split ids into runs of equal values; every non-negative id must form one run."""
    if ids.numel() == 0:
        return []
    values, counts = torch.unique_consecutive(ids, return_counts=True)
    runs, start, seen = [], 0, set()
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        if value < -1:
            raise ValueError(f"{name} must be >= 0, or -1 for padding; got {value}")
        if value >= 0 and value in seen:
            raise ValueError(
                f"{name}: sample id {value} appears in more than one run; pack the tokens of each "
                f"sample contiguously"
            )
        seen.add(value)
        runs.append((start, start + count, value))
        start += count
    return runs


def make_segment_mask(q_ids: Tensor, k_ids: Tensor, backend: AttentionBackend) -> SegmentMask:
    """The mask that lets query tokens attend only to key tokens of the same sample.

    ``q_ids`` ``(Nq,)`` and ``k_ids`` ``(Nk,)`` are long sample ids (``-1`` for padding). Pass the
    same ids twice for self-attention, video ids and text ids for cross-attention.
    """
    backend = AttentionBackend(backend)
    q_runs = _contiguous_runs(q_ids, "sample ids")
    k_runs = q_runs if k_ids is q_ids else _contiguous_runs(k_ids, "key sample ids")
    k_spans = {value: (start, end) for start, end, value in k_runs if value >= 0}
    block_mask = None
    if backend is AttentionBackend.FLEX and q_ids.numel() > 0 and k_ids.numel() > 0:

        def same_sample(batch: Tensor, head: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            return (q_ids[q_idx] == k_ids[kv_idx]) & (q_ids[q_idx] >= 0)

        block_mask = create_block_mask(
            same_sample, None, None, q_ids.numel(), k_ids.numel(), device=q_ids.device
        )
    groups, order = [], None
    if backend is AttentionBackend.SDPA_SEGMENTS:
        groups, order = _segment_groups(q_runs, k_spans, q_ids.device)
    return SegmentMask(backend, q_ids, k_ids, q_runs, k_spans, block_mask, groups, order)


def segment_attention(q: Tensor, k: Tensor, v: Tensor, mask: SegmentMask) -> Tensor:
    """Scaled dot-product attention restricted to same-sample pairs.

    q: (Nq, H, D), k and v: (Nk, H, D) -> (Nq, H, D). Queries with no key of their sample give 0.
    """
    if mask.backend is AttentionBackend.SDPA_SEGMENTS:
        return _attention_sdpa_segments(q, k, v, mask)
    if mask.backend is AttentionBackend.FLEX:
        return _attention_flex(q, k, v, mask)
    if mask.backend is AttentionBackend.DENSE_MASK:
        return _attention_dense(q, k, v, mask)
    raise ValueError(f"unknown attention backend {mask.backend!r}")


def _attention_sdpa_segments(q: Tensor, k: Tensor, v: Tensor, mask: SegmentMask) -> Tensor:
    # one F.scaled_dot_product_attention per group of equally long samples (most packed samples
    # share a size), each sample a batch element; then every query row back to its place
    heads = q.shape[1]
    outputs = []
    for group in mask.groups:
        G, n, m = group.samples, group.q_len, group.k_len
        q_g = rearrange(q.index_select(0, group.q_rows), "(g n) h d -> g h n d", g=G, n=n)
        k_g = rearrange(k.index_select(0, group.k_rows), "(g m) h d -> g h m d", g=G, m=m)
        v_g = rearrange(v.index_select(0, group.k_rows), "(g m) h d -> g h m d", g=G, m=m)
        out = batched_attention(q_g, k_g, v_g)  # (G, H, n, D)
        outputs.append(rearrange(out, "g h n d -> (g n) h d"))  # (G * n, H, D)
    assert mask.order is not None
    empty = q.shape[0] - sum(group.samples * group.q_len for group in mask.groups)
    if empty:
        outputs.append(q.new_zeros(empty, heads, v.shape[2]))  # queries without keys give 0
    if not outputs:
        return q.new_zeros(0, heads, v.shape[2])  # (0, H, D)
    return torch.cat(outputs, dim=0).index_select(0, mask.order)  # (Nq, H, D)


# Above this many scores per head (query length x key length) the CPU keeps SDPA's flash kernel.
EXPLICIT_ATTENTION_MAX_SCORES = 2**17


def batched_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Attention of a batch of equally long samples, (G, H, n, D) -> (G, H, n, D).

    `F.scaled_dot_product_attention`, except on the CPU for bf16 or fp16 inputs over short
    sequences (a world clip's 144-216 tokens, its text's tens), which go through
    :func:`explicit_attention`: as exact, since both keep the scores in float32, and faster
    there, where the flash kernel's blocking does not pay (docs/benchmarks.md, "Attention on the
    CPU in bf16"). Longer sequences, float32 and every GPU keep SDPA.
    """
    low_precision = q.dtype in (torch.bfloat16, torch.float16)
    short = q.shape[-2] * k.shape[-2] <= EXPLICIT_ATTENTION_MAX_SCORES
    if q.device.type == "cpu" and low_precision and short:
        return explicit_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def explicit_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(D)) v in float32 whatever the inputs' dtype; returned in q's dtype.

    (G, H, n, D), (G, H, m, D), (G, H, m, D) -> (G, H, n, D). Materializes the (G, H, n, m)
    scores, so it is for short sequences.
    """
    with torch.autocast(q.device.type, enabled=False):  # autocast would multiply in bf16
        scores = (q.float() * q.shape[-1] ** -0.5) @ k.float().transpose(-1, -2)  # (G, H, n, m)
        return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)  # (G, H, n, D)


def _attention_flex(q: Tensor, k: Tensor, v: Tensor, mask: SegmentMask) -> Tensor:
    if mask.block_mask is None:  # no queries or no keys at all
        return q.new_zeros(q.shape[0], q.shape[1], v.shape[2])  # (Nq, H, D)
    # contiguous 4D inputs: inductor's CPU flex template reads the layout of its input buffers
    q_b = rearrange(q, "n h d -> 1 h n d").contiguous()  # (1, H, Nq, D)
    k_b = rearrange(k, "m h d -> 1 h m d").contiguous()  # (1, H, Nk, D)
    v_b = rearrange(v, "m h d -> 1 h m d").contiguous()  # (1, H, Nk, D)
    out = flex_attention(q_b, k_b, v_b, block_mask=mask.block_mask)  # (1, H, Nq, D)
    return rearrange(out, "1 h n d -> n h d")  # (Nq, H, D)


def _attention_dense(q: Tensor, k: Tensor, v: Tensor, mask: SegmentMask) -> Tensor:
    allowed = (mask.q_ids[:, None] == mask.k_ids[None, :]) & (mask.q_ids[:, None] >= 0)  # (Nq, Nk)
    scores = torch.einsum("nhd,mhd->hnm", q, k) / math.sqrt(q.shape[-1])  # (H, Nq, Nk)
    scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)  # (H, Nq, Nk)
    weights = scores.softmax(dim=-1) * allowed.any(dim=-1, keepdim=True)  # (H, Nq, Nk), 0 if none
    return torch.einsum("hnm,mhd->nhd", weights, v)  # (Nq, H, D)


# ------------------------------------------------------------------------------------------------
# 3D rotary position embedding
# ------------------------------------------------------------------------------------------------


def split_rope_dims(head_dim: int) -> tuple[int, int, int]:
    """Default split of a head's channels over (t, h, w), as in Wan: t gets ``d - 4 * (d // 6)``,
    h and w get ``2 * (d // 6)`` each (all even when ``d`` is even)."""
    if head_dim % 2 != 0 or head_dim < 6:
        raise ValueError(f"head_dim must be even and >= 6 for 3D RoPE, got {head_dim}")
    spatial = 2 * (head_dim // 6)
    return (head_dim - 2 * spatial, spatial, spatial)


def rope_angles(positions: Tensor, axes_dims: tuple[int, int, int], theta: float) -> Tensor:
    """Rotation of every channel pair of every token from its integer (t, h, w) position.

    positions: (N, 3) integer grid indices -> (N, D/2, 2) holding (cos, sin) per channel pair, where
    D = sum(axes_dims). Axis a rotates its D_a channels at frequencies theta^(-2i / D_a).
    """
    angles = []
    for axis, dim in enumerate(axes_dims):
        exponents = torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim
        inv_freq = theta**-exponents  # (D_a/2,)
        angles.append(positions[:, axis, None].double() * inv_freq)  # (N, D_a/2)
    angle = torch.cat(angles, dim=-1)  # (N, D/2)
    return torch.stack([angle.cos(), angle.sin()], dim=-1).float()  # (N, D/2, 2)


def apply_rope(x: Tensor, rope: Tensor) -> Tensor:
    """Rotate adjacent channel pairs of x by the angles of its token. x: (N, H, D) -> (N, H, D)."""
    pairs = rearrange(x.float(), "n h (d two) -> n h d two", two=2)  # (N, H, D/2, 2)
    x0, x1 = pairs.unbind(-1)  # (N, H, D/2) each
    cos, sin = rope[:, None, :, 0], rope[:, None, :, 1]  # (N, 1, D/2) each
    rotated = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)  # (N, H, D/2, 2)
    return rearrange(rotated, "n h d two -> n h (d two)").type_as(x)  # (N, H, D)


# ------------------------------------------------------------------------------------------------
# Norms and modulation
# ------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    """RMS normalization over the last dimension with a learned scale (used for QK-norm)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # x: (..., dim); statistics in fp32 for low-precision inputs
        xf = x.float()
        rms = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., 1)
        return (xf * rms * self.weight.float()).type_as(x)  # (..., dim)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN modulation with per-token shift and scale; all (N, hidden)."""
    return x * (1 + scale) + shift


# ------------------------------------------------------------------------------------------------
# Attention modules
# ------------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention over a packed sequence with QK-norm and 3D RoPE."""

    def __init__(self, hidden: int, heads: int, qk_norm: bool = True) -> None:
        super().__init__()
        self.heads = heads
        head_dim = hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.q_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, rope: Tensor, mask: SegmentMask) -> Tensor:
        # x: (N, hidden), rope: (N, head_dim/2, 2)
        qkv = rearrange(self.qkv(x), "n (three h d) -> three n h d", three=3, h=self.heads)
        q, k, v = qkv.unbind(0)  # (N, H, D) each
        q = apply_rope(self.q_norm(q), rope)  # (N, H, D)
        k = apply_rope(self.k_norm(k), rope)  # (N, H, D)
        out = segment_attention(q, k, v, mask)  # (N, H, D)
        return self.proj(rearrange(out, "n h d -> n (h d)"))  # (N, hidden)


class CrossAttention(nn.Module):
    """Multi-head attention from video tokens to the text tokens of their own sample."""

    def __init__(self, hidden: int, heads: int, qk_norm: bool = True) -> None:
        super().__init__()
        self.heads = heads
        head_dim = hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.q_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: Tensor, text: Tensor, mask: SegmentMask) -> Tensor:
        # x: (N, hidden), text: (M, hidden)
        q = rearrange(self.q(x), "n (h d) -> n h d", h=self.heads)  # (N, H, D)
        kv = rearrange(self.kv(text), "m (two h d) -> two m h d", two=2, h=self.heads)
        k, v = kv.unbind(0)  # (M, H, D) each
        q, k = self.q_norm(q), self.k_norm(k)  # (N, H, D), (M, H, D)
        out = segment_attention(q, k, v, mask)  # (N, H, D)
        return self.proj(rearrange(out, "n h d -> n (h d)"))  # (N, hidden)


# ------------------------------------------------------------------------------------------------
# MLP and embedders
# ------------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """Two-layer feed-forward network with a tanh-approximated GELU."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        # x: (N, dim)
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))  # (N, out_dim)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (already scaled) timesteps. t: (N,) float -> (N, dim) fp32."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )  # (dim/2,)
    args = t.float()[:, None] * freqs  # (N, dim/2)
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, 2 * (dim/2))
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))  # (N, dim)
    return embedding


class TimestepEmbedder(nn.Module):
    """Per-token timestep t in [0, 1] -> sinusoidal(t * 1000) -> MLP -> (N, hidden)."""

    def __init__(self, hidden: int, frequency_dim: int = TIMESTEP_FREQUENCY_DIM) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.fc1 = nn.Linear(frequency_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, t: Tensor) -> Tensor:
        # t: (N,) float in [0, 1]
        freq = timestep_embedding(t * TIMESTEP_SCALE, self.frequency_dim)  # (N, frequency_dim)
        freq = freq.to(self.fc1.weight.dtype)  # (N, frequency_dim)
        return self.fc2(F.silu(self.fc1(freq)))  # (N, hidden)


class TextEmbedder(nn.Module):
    """Text encoder features -> model width (a GELU-tanh MLP, as PixArt's caption projection)."""

    def __init__(self, text_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(text_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, text: Tensor) -> Tensor:
        # text: (M, text_dim)
        return self.fc2(F.gelu(self.fc1(text), approximate="tanh"))  # (M, hidden)
