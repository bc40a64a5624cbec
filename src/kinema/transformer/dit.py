"""Kinema's diffusion transformer (DiT) over packed spacetime tokens.

Reads top to bottom: config, block, final layer, model, weight init, presets, parameter and FLOP
counts. The model maps one packed sequence of noisy latent tokens to a velocity per token:

    tokens (N, in_dim), positions (N, 3), sample_ids (N,), timesteps (N,),
    text_tokens (M, text_dim), text_ids (M,)  ->  velocity (N, in_dim)

Patchify/unpatchify and packing happen outside (``kinema.patches``); noise, timesteps and solvers
live in ``kinema.flow`` / ``kinema.sampling``. The model never loops and never knows about modes: a
conditioning frame is just a token whose timestep is 0.

Design choices, and why:
- Per-token timesteps: every token gets its own adaLN shift/scale/gate. The timestep-dependent part
  is computed once per forward by a projection shared by all blocks, plus a learned per-block
  offset (PixArt-alpha's "adaLN-single", also Wan's). Per-block adaLN MLPs (DiT) would cost about
  6 * hidden^2 parameters per block (a third of the model) and as many FLOPs per token per block.
- Text enters through cross-attention, restricted to the sample's own text tokens, so a packed
  batch of samples behaves exactly like each sample alone. With ``pooled_text`` the mean of the
  sample's text features also joins the timestep embedding (the pooled vector of SD3 and Flux), so
  global attributes such as colours reach every adaLN shift, scale and gate directly.
- adaLN-Zero: gates, the cross-attention output and the final projection start at zero, so every
  block starts as the identity and the fresh model predicts exactly zero (see initialize_weights).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from kinema.transformer.layers import (
    MLP,
    TIMESTEP_FREQUENCY_DIM,
    AttentionBackend,
    CrossAttention,
    SegmentMask,
    SelfAttention,
    TextEmbedder,
    TimestepEmbedder,
    make_segment_mask,
    modulate,
    rope_angles,
    split_rope_dims,
)

__all__ = [
    "PRESETS",
    "DiT",
    "DiTBlock",
    "DiTConfig",
    "FinalLayer",
    "count_parameters",
    "flops_per_token",
    "get_preset",
    "pool_text",
    "print_presets",
]


@dataclass(frozen=True)
class DiTConfig:
    in_dim: int = 64  # channels of one patch token: latent channels * patch volume (16 * 1*2*2)
    hidden: int = 384  # model width
    depth: int = 6  # number of transformer blocks
    heads: int = 6  # attention heads; hidden must divide evenly (head_dim = hidden // heads)
    mlp_ratio: float = 4.0  # MLP width = int(hidden * mlp_ratio)
    text_dim: int = 384  # width of the text encoder's token features (MiniLM-L6: 384)
    # channels of each head rotated by t, h and w positions; None: Wan's split of head_dim
    rope_axes_dims: tuple[int, int, int] | None = None
    rope_theta: float = 10000.0  # RoPE base period
    qk_norm: bool = True  # RMSNorm on queries and keys of every head (self- and cross-attention)
    attention_backend: AttentionBackend = AttentionBackend.SDPA_SEGMENTS  # see AttentionBackend
    # add an MLP of the mean of the sample's text features to the timestep embedding (adaLN);
    # False: text enters through cross-attention only
    pooled_text: bool = False

    def __post_init__(self) -> None:
        for name in ("in_dim", "hidden", "depth", "heads", "text_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DiTConfig.{name} must be a positive int, got {value!r}")
        if self.hidden % self.heads:
            raise ValueError(
                f"DiTConfig.hidden ({self.hidden}) must be divisible by heads ({self.heads})"
            )
        if self.mlp_ratio <= 0:
            raise ValueError(f"DiTConfig.mlp_ratio must be positive, got {self.mlp_ratio!r}")
        if self.rope_axes_dims is not None:
            dims = tuple(int(d) for d in self.rope_axes_dims)
            if len(dims) != 3 or any(d < 2 or d % 2 for d in dims) or sum(dims) != self.head_dim:
                raise ValueError(
                    f"DiTConfig.rope_axes_dims must be three positive even ints summing to "
                    f"head_dim={self.head_dim}, got {self.rope_axes_dims!r}"
                )
            object.__setattr__(self, "rope_axes_dims", dims)
        else:
            split_rope_dims(self.head_dim)  # raises for an odd or too small head_dim
        try:
            backend = AttentionBackend(self.attention_backend)
        except ValueError:
            valid = [b.value for b in AttentionBackend]
            raise ValueError(
                f"DiTConfig.attention_backend must be one of {valid}, "
                f"got {self.attention_backend!r}"
            ) from None
        object.__setattr__(self, "attention_backend", backend)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden * self.mlp_ratio)

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Channels of each head rotated by (t, h, w)."""
        return self.rope_axes_dims or split_rope_dims(self.head_dim)


# ------------------------------------------------------------------------------------------------
# Blocks
# ------------------------------------------------------------------------------------------------


class DiTBlock(nn.Module):
    """Self-attention (3D RoPE, same-sample), cross-attention to the sample's text, MLP.

    Self-attention and MLP are wrapped in per-token adaLN modulation with gates; the six modulation
    vectors are the shared timestep projection plus this block's learned offset. Both are added
    once per distinct condition and each vector gathered per token, so no (N, 6, hidden) sum is
    built, nor the stack that joined its six gradients in the backward pass (docs/benchmarks.md,
    "adaLN modulation per distinct condition").
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        hidden = config.hidden
        self.modulation = nn.Parameter(torch.zeros(6, hidden))  # per-block offset of adaLN-single
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttention(hidden, config.heads, config.qk_norm)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.cross_attn = CrossAttention(hidden, config.heads, config.qk_norm)
        self.norm3 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(hidden, config.mlp_hidden)

    def forward(
        self,
        x: Tensor,
        time_mod: Tensor,
        rows: Tensor,
        text: Tensor,
        rope: Tensor,
        self_mask: SegmentMask,
        cross_mask: SegmentMask,
    ) -> Tensor:
        # x: (N, hidden), time_mod: (U, 6, hidden) per distinct condition, rows: (N,) into it,
        # text: (M, hidden), rope: (N, head_dim/2, 2)
        mod = time_mod + self.modulation  # (U, 6, hidden)
        shift_sa, scale_sa, gate_sa, shift_mlp, scale_mlp, gate_mlp = (
            vector.index_select(0, rows) for vector in mod.unbind(1)
        )  # (N, hidden) each
        h = modulate(self.norm1(x), shift_sa, scale_sa)  # (N, hidden)
        x = x + gate_sa * self.self_attn(h, rope, self_mask)  # (N, hidden)
        x = x + self.cross_attn(self.norm2(x), text, cross_mask)  # (N, hidden)
        h = modulate(self.norm3(x), shift_mlp, scale_mlp)  # (N, hidden)
        return x + gate_mlp * self.mlp(h)  # (N, hidden)


class FinalLayer(nn.Module):
    """Per-token adaLN modulation and a linear map back to patch channels."""

    def __init__(self, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor, t_emb: Tensor, rows: Tensor | None = None) -> Tensor:
        # x: (N, hidden), t_emb: (N, hidden), or (U, hidden) with rows (N,) into it
        modulation = self.adaLN_modulation(t_emb)  # (N or U, 2 * hidden)
        if rows is not None:
            modulation = modulation[rows]  # (N, 2 * hidden)
        shift, scale = modulation.chunk(2, dim=-1)  # (N, hidden) each
        return self.linear(modulate(self.norm(x), shift, scale))  # (N, out_dim)


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


class DiT(nn.Module):
    """Diffusion transformer over one packed sequence of spacetime tokens; predicts velocity.

    Attention is restricted to tokens of the same sample (``sample_ids``), so the output for a
    sample does not depend on what else is packed with it. Padding tokens (id ``-1``) affect no
    other token; their own outputs are meaningless and must be masked out of any loss.
    """

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden
        self.x_embedder = nn.Linear(config.in_dim, hidden)
        self.t_embedder = TimestepEmbedder(hidden)
        self.text_embedder = TextEmbedder(config.text_dim, hidden)
        self.pooled_text_embedder = (
            TextEmbedder(config.text_dim, hidden) if config.pooled_text else None
        )
        # adaLN-single: one projection of the timestep embedding shared by all blocks
        self.time_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))
        self.blocks = nn.ModuleList([DiTBlock(config) for _ in range(config.depth)])
        self.final_layer = FinalLayer(hidden, config.in_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform linears, then adaLN-Zero: every block starts as the identity and the
        model's output starts at exactly zero."""

        def xavier_linear(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(xavier_linear)
        # timestep embedding MLP: small normal, as in DiT
        nn.init.normal_(self.t_embedder.fc1.weight, std=0.02)
        nn.init.normal_(self.t_embedder.fc2.weight, std=0.02)
        # adaLN-Zero: shared timestep projection and per-block offsets are zero, so every shift,
        # scale and gate starts at 0 (gates closed, norms unmodulated)
        nn.init.zeros_(self.time_modulation[-1].weight)
        nn.init.zeros_(self.time_modulation[-1].bias)
        # the pooled text vector starts at zero, so a model that gains it behaves as before
        if self.pooled_text_embedder is not None:
            nn.init.zeros_(self.pooled_text_embedder.fc2.weight)
        for block in self.blocks:
            nn.init.zeros_(block.modulation)
            # cross-attention has no gate: zero its output projection instead (as PixArt-alpha)
            nn.init.zeros_(block.cross_attn.proj.weight)
            nn.init.zeros_(block.cross_attn.proj.bias)
        # final layer: zero modulation and zero projection -> the fresh model predicts 0
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(
        self,
        tokens: Tensor,
        positions: Tensor,
        sample_ids: Tensor,
        timesteps: Tensor,
        text_tokens: Tensor,
        text_ids: Tensor,
    ) -> Tensor:
        """Velocity for every token of one packed sequence.

        tokens: (N, in_dim) patchified latents; positions: (N, 3) integer (t, h, w) grid indices;
        sample_ids: (N,) integer, -1 for padding, each sample's tokens contiguous; timesteps: (N,)
        float in [0, 1], per token; text_tokens: (M, text_dim); text_ids: (M,) integer sample id of
        each text token (-1 for padding). Returns (N, in_dim).
        """
        self._check_inputs(tokens, positions, sample_ids, timesteps, text_tokens, text_ids)
        cfg = self.config
        self_mask = make_segment_mask(sample_ids, sample_ids, cfg.attention_backend)
        cross_mask = make_segment_mask(sample_ids, text_ids, cfg.attention_backend)
        rope = rope_angles(positions, cfg.rope_dims, cfg.rope_theta)  # (N, head_dim/2, 2)

        x = self.x_embedder(tokens)  # (N, hidden)
        cond, rows = self.conditioning(sample_ids, timesteps, text_tokens, text_ids)  # (U, hidden)
        time_mod = self.time_modulation(cond).unflatten(-1, (6, cfg.hidden))  # (U, 6, hidden)
        text = self.text_embedder(text_tokens)  # (M, hidden)
        for block in self.blocks:
            x = block(x, time_mod, rows, text, rope, self_mask, cross_mask)  # (N, hidden)
        return self.final_layer(x, cond, rows)  # (N, in_dim)

    def conditioning(
        self, sample_ids: Tensor, timesteps: Tensor, text_tokens: Tensor, text_ids: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The adaLN conditioning vector of every distinct token condition, and each token's row.

        A token's condition is its timestep (and, with ``pooled_text``, its sample's mean text),
        and few are distinct: the noisy tokens of a sample share one t and its given tokens have
        t = 0. So the timestep MLP and the modulation projections run once per distinct
        condition, not once per token (at 6 * hidden^2 per token they are a tenth of the tiny
        preset's FLOPs). Returns ``cond`` (U, hidden) and ``rows`` (N,) into it.
        """
        if self.pooled_text_embedder is None:
            times, rows = torch.unique(timesteps, return_inverse=True)  # (U,), (N,)
            return self.t_embedder(times), rows
        means, index = pool_text(text_tokens, text_ids, sample_ids)  # (S + 1, text_dim), (N,)
        keys = torch.stack([timesteps.double(), index.double()], dim=1)  # (N, 2), exact
        unique, rows = torch.unique(keys, dim=0, return_inverse=True)  # (U, 2), (N,)
        times = unique[:, 0].to(timesteps.dtype)  # (U,)
        cond = self.t_embedder(times) + self.pooled_text_embedder(means)[unique[:, 1].long()]
        return cond, rows

    def _check_inputs(
        self,
        tokens: Tensor,
        positions: Tensor,
        sample_ids: Tensor,
        timesteps: Tensor,
        text_tokens: Tensor,
        text_ids: Tensor,
    ) -> None:
        cfg = self.config
        if tokens.ndim != 2 or tokens.shape[1] != cfg.in_dim:
            raise ValueError(f"tokens must be (N, {cfg.in_dim}), got {tuple(tokens.shape)}")
        n = tokens.shape[0]
        if positions.shape != (n, 3) or positions.is_floating_point():
            raise ValueError(
                f"positions must be integer (N, 3) = ({n}, 3), got {tuple(positions.shape)} "
                f"{positions.dtype}"
            )
        if sample_ids.shape != (n,) or sample_ids.is_floating_point():
            raise ValueError(
                f"sample_ids must be integer (N,) = ({n},), got {tuple(sample_ids.shape)} "
                f"{sample_ids.dtype}"
            )
        if timesteps.shape != (n,) or not timesteps.is_floating_point():
            raise ValueError(
                f"timesteps must be float (N,) = ({n},), one per token, got "
                f"{tuple(timesteps.shape)} {timesteps.dtype}"
            )
        if text_tokens.ndim != 2 or text_tokens.shape[1] != cfg.text_dim:
            raise ValueError(
                f"text_tokens must be (M, {cfg.text_dim}), got {tuple(text_tokens.shape)}"
            )
        m = text_tokens.shape[0]
        if text_ids.shape != (m,) or text_ids.is_floating_point():
            raise ValueError(
                f"text_ids must be integer (M,) = ({m},), got {tuple(text_ids.shape)} "
                f"{text_ids.dtype}"
            )


def pool_text(text_tokens: Tensor, text_ids: Tensor, sample_ids: Tensor) -> tuple[Tensor, Tensor]:
    """The mean text feature of every sample, and which row each video token reads.

    Returns ``means`` (S + 1, text_dim), one row per sample id and a last row of zeros, and
    ``index`` (N,) into it. A sample without text tokens (a dropped caption) gets zeros, the
    same vector the unconditional branch of guidance sees; padding tokens read the last row.
    """
    ids = torch.cat([sample_ids, text_ids])
    num_samples = max(int(ids.max().item()) + 1, 0) if ids.numel() else 0
    sums = text_tokens.new_zeros(num_samples + 1, text_tokens.shape[1])
    counts = text_tokens.new_zeros(num_samples + 1)
    slot = torch.where(text_ids >= 0, text_ids, num_samples)
    sums.index_add_(0, slot, text_tokens)
    counts.index_add_(0, slot, torch.ones_like(text_ids, dtype=counts.dtype))
    means = sums / counts.clamp(min=1).unsqueeze(1)
    means[num_samples] = 0
    index = torch.where(sample_ids >= 0, sample_ids, num_samples)
    return means, index


# ------------------------------------------------------------------------------------------------
# Presets
# ------------------------------------------------------------------------------------------------

PRESETS: dict[str, DiTConfig] = {
    # tests: about 0.2M parameters; matches the debug VAE (4 latent channels) with 1x2x2 patches
    "debug": DiTConfig(in_dim=16, hidden=64, depth=2, heads=4, text_dim=32),
    # CPU training: about 15M parameters
    "tiny": DiTConfig(in_dim=64, hidden=384, depth=6, heads=6, text_dim=384),
    # about 115M parameters
    "small": DiTConfig(in_dim=64, hidden=768, depth=12, heads=12, text_dim=384),
    # about 405M parameters
    "base": DiTConfig(in_dim=64, hidden=1024, depth=24, heads=16, text_dim=384),
    # about 1.06B parameters (head_dim 64); for accelerators only, documented here for scale
    "xl": DiTConfig(in_dim=64, hidden=1536, depth=28, heads=24, text_dim=384),
}


def get_preset(name: str, **overrides: object) -> DiTConfig:
    """A named preset, optionally with fields replaced (``get_preset("tiny", in_dim=16)``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown DiT preset {name!r}; valid: {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides)


# ------------------------------------------------------------------------------------------------
# Parameter and FLOP counts (analytic: no model is allocated)
# ------------------------------------------------------------------------------------------------


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def count_parameters(config: DiTConfig) -> int:
    """Exact number of parameters of ``DiT(config)``, computed without building it."""
    h, f = config.hidden, config.mlp_hidden
    qk_norm = 2 * config.head_dim if config.qk_norm else 0
    block = (
        6 * h  # modulation offsets
        + _linear(h, 3 * h) + _linear(h, h) + qk_norm  # self-attention
        + _linear(h, h) + _linear(h, 2 * h) + _linear(h, h) + qk_norm  # cross-attention
        + _linear(h, f) + _linear(f, h)  # MLP
    )  # fmt: skip
    return (
        _linear(config.in_dim, h)  # x_embedder
        + _linear(TIMESTEP_FREQUENCY_DIM, h) + _linear(h, h)  # t_embedder
        + _linear(config.text_dim, h) + _linear(h, h)  # text_embedder
        + (_linear(config.text_dim, h) + _linear(h, h) if config.pooled_text else 0)
        + _linear(h, 6 * h)  # shared time modulation
        + config.depth * block
        + _linear(h, 2 * h) + _linear(h, config.in_dim)  # final layer
    )  # fmt: skip


def flops_per_token(
    config: DiTConfig, seq_len: int, text_len: int = 0, training: bool = True
) -> float:
    """Matmul FLOPs per video token, for MFU estimates.

    ``seq_len``: tokens per sample (the attention span, not the packed length); ``text_len``:
    text tokens per sample. Counts 2 FLOPs per multiply-add of every linear, the attention score
    and value products, and the text-side and conditioning projections (once per sample, as one
    timestep per sample gives) amortized over the sample's video tokens.
    Elementwise work is ignored. ``training=True`` returns forward + backward (3x forward).
    """
    h, f, L = config.hidden, config.mlp_hidden, config.depth
    per_token_weights = (
        config.in_dim * h  # x_embedder
        + L * (4 * h * h + 2 * h * h + 2 * h * f)  # qkv+proj, cross q+proj, MLP
        + h * config.in_dim  # final projection
    )  # fmt: skip
    text_weights = config.text_dim * h + h * h + L * 2 * h * h  # text embedder, cross k/v
    # t_embedder, shared time modulation and the final layer's: once per distinct timestep
    condition_weights = TIMESTEP_FREQUENCY_DIM * h + h * h + 6 * h * h + 2 * h * h
    attention = L * (4 * seq_len * h + 4 * text_len * h)  # QK^T and AV, self and cross
    per_sample = 2 * (text_weights * text_len + condition_weights)
    forward = 2 * per_token_weights + per_sample / max(seq_len, 1) + attention
    return float(3 * forward if training else forward)


def print_presets(seq_len: int = 1024, text_len: int = 32) -> None:
    """Print every preset's shape, parameter count and training FLOPs per token."""
    print(f"{'preset':8} {'hidden':>6} {'depth':>5} {'heads':>5} {'params':>14} {'GFLOP/tok':>9}")
    for name, config in PRESETS.items():
        params = count_parameters(config)
        gflops = flops_per_token(config, seq_len, text_len) / 1e9
        print(
            f"{name:8} {config.hidden:6d} {config.depth:5d} {config.heads:5d} "
            f"{params:14,d} {gflops:9.3f}"
        )
    print(f"(training FLOPs = forward + backward, {seq_len} tokens and {text_len} text per sample)")


if __name__ == "__main__":
    print_presets()
