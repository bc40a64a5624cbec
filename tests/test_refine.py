"""Fitting latents to frames through the decoder (kinema.compression.refine) on the debug VAE."""

from __future__ import annotations

import pytest
import torch

from kinema.compression.refine import refine_latents
from kinema.compression.vae import PRESETS, CausalVAE


@pytest.fixture(scope="module")
def vae() -> CausalVAE:
    torch.manual_seed(0)
    return CausalVAE(PRESETS["debug"]).eval()


def video(frames: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, 16, 16, generator=g) * 2 - 1


def error(vae: CausalVAE, z: torch.Tensor, x: torch.Tensor, frames: slice) -> float:
    with torch.no_grad():
        return float((vae.decode(z)[:, :, frames] - x[:, :, frames]).square().mean())


def test_refining_an_image_lowers_its_error_and_leaves_the_vae_alone(vae):
    x = video(1)
    with torch.inference_mode():  # as the pipeline calls it
        z = vae.encode(x)
        refined = refine_latents(vae, z, x, torch.tensor([True]), torch.tensor([True]), steps=10)
    assert refined.shape == z.shape
    assert error(vae, refined, x, slice(0, 1)) < 0.99 * error(vae, z, x, slice(0, 1))
    assert all(p.grad is None for p in vae.parameters())
    more = refine_latents(vae, z.clone(), x, torch.tensor([True]), torch.tensor([True]), steps=30)
    assert error(vae, more, x, slice(0, 1)) < error(vae, refined, x, slice(0, 1))
    with_grad = vae.encode(x)  # latents that carry a graph are taken too, detached
    out = refine_latents(vae, with_grad, x, torch.tensor([True]), torch.tensor([True]), steps=1)
    assert not out.requires_grad and all(p.grad is None for p in vae.parameters())


def test_only_the_masked_latent_frames_move(vae):
    x = video(9, seed=1)  # 3 latent frames with the debug VAE's 4x time compression
    with torch.no_grad():
        z = vae.encode(x)
    frame_mask = torch.tensor([True] * 5 + [False] * 4)  # the first two latent frames' frames
    latent_mask = torch.tensor([False, True, False])
    refined = refine_latents(vae, z, x, frame_mask, latent_mask, steps=5)
    assert torch.equal(refined[:, :, 0], z[:, :, 0]) and torch.equal(refined[:, :, 2], z[:, :, 2])
    assert not torch.equal(refined[:, :, 1], z[:, :, 1])
    assert error(vae, refined, x, slice(1, 5)) < error(vae, z, x, slice(1, 5))


def test_nothing_to_do_returns_the_latents(vae):
    x = video(5, seed=2)
    with torch.no_grad():
        z = vae.encode(x)
    everything, nothing = torch.ones(5, dtype=torch.bool), torch.zeros(2, dtype=torch.bool)
    assert refine_latents(vae, z, x, everything, torch.ones(2, dtype=torch.bool), 0) is z
    assert refine_latents(vae, z, x, everything, nothing, 5) is z
    # the decoder is causal: a later latent frame cannot lower an earlier frame's error
    moved = refine_latents(vae, z, x[:, :, :1], everything[:1], torch.tensor([False, True]), 5)
    assert torch.equal(moved, z)


def test_bad_arguments_name_the_value(vae):
    x = video(5, seed=3)
    z = torch.zeros(1, 4, 2, 4, 4)
    masks = torch.ones(5, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    with pytest.raises(ValueError, match="refine steps must be >= 0, got -1"):
        refine_latents(vae, z, x, *masks, steps=-1)
    with pytest.raises(ValueError, match="refine lr must be > 0, got 0"):
        refine_latents(vae, z, x, *masks, steps=1, lr=0.0)
    with pytest.raises(ValueError, match=r"per latent frame \(2\).*latent_mask \(3,\)"):
        refine_latents(vae, z, x, masks[0], torch.ones(3, dtype=torch.bool), steps=1)
    with pytest.raises(ValueError, match="2 latent frames decode to fewer than the 9 frames"):
        refine_latents(vae, z, video(9), torch.ones(9, dtype=torch.bool), masks[1], steps=1)
