"""The VAE's pixel convention: uint8 RGB frames ``(T, H, W, 3)`` on one side, float videos
``(1, 3, T, H, W)`` in [-1, 1] on the other (0 -> -1, 255 -> 1)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["quantize", "to_frames", "to_video_tensor"]


def to_video_tensor(frames: np.ndarray) -> Tensor:
    """uint8 (T, H, W, 3) -> float32 (1, 3, T, H, W) in [-1, 1]."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # (3, T, H, W)
    return video[None].float() / 127.5 - 1.0


def to_frames(video: Tensor) -> np.ndarray:
    """float (1, 3, T, H, W) in [-1, 1] (values outside are clipped) -> uint8 (T, H, W, 3)."""
    pixels = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (3, T, H, W)
    return pixels.permute(1, 2, 3, 0).cpu().numpy()


def quantize(video: Tensor) -> Tensor:
    """A float video rounded to the 8-bit values it would be written as (still in [-1, 1])."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1.0
