"""Timestep experts: two DiTs that split the sampling schedule at a boundary time.

Which way a scene moves is settled in the first sampling steps, at t close to 1 (docs/benchmarks.md,
"Where the sign is decided"), where ordinary training almost never looks. A *high-noise expert* is
a copy of the model fine-tuned on that band alone; it predicts every step from t >= ``boundary``
and the original model (the *low-noise* one) every step after, as Wan 2.2 splits its denoising
between a high-noise and a low-noise expert. Each call goes to one expert, so sampling costs
what one DiT costs.

The expert usually retrains a few of the model's tensors (``model.trainable``) and shares the
rest: `share_parameters` makes the shared ones the very same tensors, so the pair takes little
more memory than one model, and a model folder stores only the expert's own tensors
(`kinema.hub`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kinema.transformer.dit import DiT, DiTConfig

__all__ = ["TimestepExperts", "share_parameters"]


class TimestepExperts(nn.Module):
    """``high`` predicts a call whose noisiest token has ``t >= boundary``, ``low`` the others.

    Same call and output as `DiT` (given clean tokens carry t = 0, so the generated tokens' t
    decides). In a packed batch every sample goes to the expert of the noisiest token: this
    module is for sampling, where all generated tokens share one t; train each expert alone.
    """

    def __init__(self, low: DiT, high: DiT, boundary: float) -> None:
        super().__init__()
        if not 0.0 < boundary <= 1.0:
            raise ValueError(f"the high-noise boundary must be in (0, 1], got {boundary}")
        if low.config != high.config:
            raise ValueError(
                f"timestep experts must share one DiT config, got {low.config} and {high.config}"
            )
        self.low, self.high, self.boundary = low, high, boundary

    @property
    def config(self) -> DiTConfig:
        return self.low.config

    def expert_for(self, timesteps: Tensor) -> DiT:
        """The DiT that predicts a call with these per-token timesteps (compared at their own
        precision, so a float32 t of exactly the boundary goes to the expert)."""
        boundary = torch.tensor(self.boundary, dtype=timesteps.dtype)
        if timesteps.numel() and bool(timesteps.max().cpu() >= boundary):
            return self.high
        return self.low

    def forward(
        self,
        tokens: Tensor,
        positions: Tensor,
        sample_ids: Tensor,
        timesteps: Tensor,
        text_tokens: Tensor,
        text_ids: Tensor,
    ) -> Tensor:
        expert = self.expert_for(timesteps)
        return expert(tokens, positions, sample_ids, timesteps, text_tokens, text_ids)


def share_parameters(expert: DiT, base: DiT, own: set[str]) -> None:
    """Make every parameter of `expert` not named in `own` the very tensor of `base`."""
    base_params = dict(base.named_parameters())
    for name in base_params.keys() - own:
        module_name, _, leaf = name.rpartition(".")
        expert.get_submodule(module_name).register_parameter(leaf, base_params[name])
