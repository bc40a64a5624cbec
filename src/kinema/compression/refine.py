"""Fit latents to frames through the decoder: the encoder's answer, made closer where it matters.

The encoder is amortized: one forward pass predicts a latent for any clip, and on a given clip
that latent is not the one the decoder turns back into the clip most faithfully. Where frames are
*given* (the image of image-to-video, the context of an extension, the ends of a connection), the
latents that stand for them can be improved per clip: start from the encoder's latents and take a
few Adam steps on the decoder's pixel error over the given frames. On Kinema's world clips ten
steps lift a first frame's PSNR by about 2.5 dB and twenty by about 3 dB.

    z = vae.encode(video)                                       # (B, C, t, h, w), normalized
    z = refine_latents(vae, z, video, frame_mask, latent_mask, steps=20)  # same shape, closer

Only the latent frames in ``latent_mask`` move; the loss covers the frames in ``frame_mask``.
The decoder is causal, so only the latent frames up to the last one that moves are decoded.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kinema.compression.vae import CausalVAE

__all__ = ["DEFAULT_REFINE_LR", "refine_latents"]

DEFAULT_REFINE_LR = 0.05  # Adam step on normalized latents (their std is about 1)


def refine_latents(
    vae: CausalVAE,
    latents: Tensor,
    video: Tensor,
    frame_mask: Tensor,
    latent_mask: Tensor,
    steps: int,
    lr: float = DEFAULT_REFINE_LR,
) -> Tensor:
    """Normalized latents (B, C, t, h, w) with the frames ``latent_mask`` (t,) marks fitted to
    ``video`` (B, 3, T, H, W) in [-1, 1] at the frames ``frame_mask`` (T,) marks, by ``steps``
    Adam steps on the decoder's mean squared error. ``T`` may be shorter than the latents
    decode to (a trimmed clip); latents the mask leaves out come back unchanged. Runs with
    gradients even when called under ``torch.inference_mode``; the VAE's weights get none."""
    if steps < 0:
        raise ValueError(f"refine steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"refine lr must be > 0, got {lr}")
    t, T = latents.shape[2], video.shape[2]
    if latent_mask.shape != (t,) or frame_mask.shape != (T,):
        raise ValueError(
            f"refine_latents needs a flag per latent frame ({t}) and per frame ({T}), got "
            f"latent_mask {tuple(latent_mask.shape)} and frame_mask {tuple(frame_mask.shape)}"
        )
    if vae.config.num_video_frames(t) < T:
        raise ValueError(f"{t} latent frames decode to fewer than the {T} frames given")
    if steps == 0 or not latent_mask.any() or not frame_mask.any():
        return latents
    stop = int(latent_mask.nonzero()[-1]) + 1  # the decoder is causal
    frames = min(T, vae.config.num_video_frames(stop))
    if not frame_mask[:frames].any():
        return latents
    with torch.inference_mode(False), torch.enable_grad():
        # clones are normal tensors, which autograd can save, also when called under inference mode
        fixed = latents[:, :, :stop].detach().clone()
        target = video[:, :, :frames].detach().clone()
        frame_mask = frame_mask[:frames].clone().to(fixed.device)
        movable = latent_mask[:stop].clone().to(fixed.device).view(1, 1, stop, 1, 1)
        free = fixed.clone().requires_grad_(True)  # only the movable frames get gradients
        optimizer = torch.optim.Adam([free], lr=lr)
        for _ in range(steps):
            decoded = vae.decode(torch.where(movable, free, fixed))[:, :, :frames]
            loss = (decoded - target)[:, :, frame_mask].square().mean()
            (free.grad,) = torch.autograd.grad(loss, free)
            optimizer.step()
        out = latents.detach().clone()
        out[:, :, :stop] = torch.where(movable, free.detach(), fixed)
    return out
