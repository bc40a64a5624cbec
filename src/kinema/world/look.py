"""How much a video looks like the world: the share of its pixels in the world's palette.

WorldBench's checks ask whether the prompt's objects, motions and camera are there; they do not
ask whether the rest of the frame looks like the world. A model can pass a colour check with a
saturated blob in a cluttered frame. The world paints everything in 13 flat colours: the 8
object colours and the 5 neutral tones of backgrounds, floors and occluders
(:data:`kinema.world.spec.COLOR_RGB`, :data:`~kinema.world.spec.TONE_RGB`). The **palette
share** of a video is the share of its pixels, over all frames, within ``TOLERANCE`` RGB levels
(Euclidean) of one of them. The world's own clips through H.264 keep most of their pixels there
(only anti-aliased edges and chroma bleed leave); muddy mixtures, blotches and textured clutter
fall outside. It needs no prompt, so it does not penalize what a short prompt leaves unsaid (a
background's tone), and it is a figure beside the pass rates, not a check: it is not part of
``overall``.
"""

from __future__ import annotations

import numpy as np

from kinema.world.spec import COLOR_RGB, TONE_RGB

__all__ = ["PALETTE", "TOLERANCE", "palette_share"]

PALETTE = np.array([*COLOR_RGB.values(), *TONE_RGB.values()], np.float32)  # (13, 3)
TOLERANCE = 32.0  # RGB levels; half the distance between the nearest two tones is 43


def palette_share(frames: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """Share in [0, 1] of the pixels of (T, H, W, 3) uint8 ``frames`` within ``tolerance`` of a
    world colour."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not frames.size:
        raise ValueError(
            f"frames must be non-empty (T, H, W, 3) uint8, got {frames.dtype} {frames.shape}"
        )
    inside = 0
    for frame in frames:  # one frame at a time: (H*W, 13) distances, not (T*H*W, 13)
        x = frame.reshape(-1, 1, 3).astype(np.float32)  # (P, 1, 3)
        nearest = np.square(x - PALETTE).sum(axis=-1).min(axis=1)  # (P,) squared distance
        inside += int((nearest <= tolerance**2).sum())
    return inside / (frames.size // 3)
