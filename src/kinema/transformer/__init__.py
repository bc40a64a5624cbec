"""Diffusion transformer over packed spacetime tokens (NaViT-style Patch n' Pack).

``DiT(config)(tokens, positions, sample_ids, timesteps, text_tokens, text_ids) -> velocity``.
"""

from kinema.transformer.dit import (
    PRESETS,
    DiT,
    DiTConfig,
    count_parameters,
    flops_per_token,
    get_preset,
    pool_text,
    print_presets,
)
from kinema.transformer.layers import AttentionBackend

__all__ = [
    "PRESETS",
    "AttentionBackend",
    "DiT",
    "DiTConfig",
    "count_parameters",
    "flops_per_token",
    "get_preset",
    "pool_text",
    "print_presets",
]
