"""What a planned clip becomes: decoded frames, VAE latents and text tokens."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from kinema.compression.pixels import to_video_tensor
from kinema.data.manifest import ClipRecord
from kinema.data.plan import ClipPlan, TextChoice
from kinema.text import TextEncoder, remember_tokens
from kinema.video import VideoError, read_video, resize_frames

__all__ = ["ClipReadError", "TextTokenCache", "encode_frames", "read_clip_frames", "text_of"]


class ClipReadError(Exception):
    """A clip could not be decoded as planned: corrupt, truncated, or not as its manifest says."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_clip_frames(record: ClipRecord, plan: ClipPlan) -> np.ndarray:
    """Decode ``plan.frames`` frames from ``plan.start``, crop ``plan.crop`` and resize to the
    planned size: ``(T, height, width, 3)`` uint8. ClipReadError when the file disappoints."""
    # Frame j is stamped j / fps; start half a frame early so float rounding never skips it.
    start = max(0.0, (plan.start - 0.5) / record.fps)
    try:
        video = read_video(record.path, start=start, max_frames=plan.frames)
    except (VideoError, ValueError) as e:
        raise ClipReadError(record.path, str(e)) from e
    frames = video.frames  # (T, H, W, 3)
    if frames.shape[0] < plan.frames:
        raise ClipReadError(
            record.path,
            f"decoded {frames.shape[0]} of {plan.frames} frames from frame {plan.start}, but the "
            f"manifest says it has {record.frames}",
        )
    if frames.shape[1:3] != (record.height, record.width):
        raise ClipReadError(
            record.path,
            f"decoded frames are {frames.shape[2]}x{frames.shape[1]}, the manifest says "
            f"{record.width}x{record.height}",
        )
    left, top, crop_w, crop_h = plan.crop
    frames = frames[:, top : top + crop_h, left : left + crop_w]  # (T, crop_h, crop_w, 3)
    return resize_frames(frames, plan.height, plan.width)  # (T, height, width, 3)


@torch.no_grad()
def encode_frames(vae: torch.nn.Module, frames: np.ndarray, bf16: bool = False) -> Tensor:
    """uint8 frames ``(T, H, W, 3)`` -> the VAE's normalized latents ``(C, t, h, w)`` (float32,
    on the CPU); ``bf16`` runs the encoder under bfloat16 autocast."""
    param = next(vae.parameters())
    video = to_video_tensor(frames).to(param.device, param.dtype)  # (1, 3, T, H, W) in [-1, 1]
    with torch.autocast(param.device.type, dtype=torch.bfloat16, enabled=bf16):
        return vae.encode(video)[0].float().cpu()  # (C, t, h, w)


def text_of(record: ClipRecord, choice: TextChoice) -> str | None:
    if choice is TextChoice.PROMPT:
        return record.prompt
    if choice is TextChoice.CAPTION:
        return record.caption
    return None


class TextTokenCache:
    """Text tokens ``(L, D)`` per text through any TextEncoder, with an in-memory LRU.

    Empty or missing text gives ``(0, D)``: no text tokens (the unconditional branch). Each text
    is encoded alone, so its tokens never depend on which other texts shared a batch (padding
    changes float rounding): with the same threads and hardware, a text's tokens are identical on
    every rank and after every resume.
    """

    def __init__(self, encoder: TextEncoder, max_items: int = 4096) -> None:
        if max_items < 0:
            raise ValueError(f"max_items must be >= 0, got {max_items}")
        self.encoder, self.max_items = encoder, max_items
        self._memory: OrderedDict[str, Tensor] = OrderedDict()

    @property
    def dim(self) -> int:
        return int(self.encoder.dim)

    def encode(self, texts: Sequence[str | None]) -> list[Tensor]:
        wanted = list(dict.fromkeys(t for t in texts if t))
        missing = [t for t in wanted if t not in self._memory]
        found = {t: self._memory[t] for t in wanted if t in self._memory}
        for text in missing:
            found[text] = self.encoder.encode([text]).sequences()[0].float().cpu()  # (L, D)
        for text in wanted:
            remember_tokens(self._memory, text, found[text], self.max_items)
        empty = torch.zeros(0, self.dim)
        return [found[t] if t else empty for t in texts]
