"""Held start: a window given frames starts sampling from those frames, held over the new ones.

A window that continues a video (extension, connection, a loop's closing window, long's chained
windows) otherwise starts from pure noise, and the transformer must find the given scene again
in its first steps. It does so only roughly: the new frames start as soft blobs that drift and
flicker away from the given frames, so the seam jumps and the continuation moves about twice as
far from the last given frame as the world's own next frames do (docs/benchmarks.md, "Held
start").

With a held start at ``s`` the window's latents start as SDEdit does, at time ``t = s`` of the
flow (``(1 - s)·held + s·noise``), from :func:`held_latents`: each new latent frame holds the
given latent frame beside it, moved on as the given video moves (a shift per latent frame that
:func:`content_shift` reads off the given frames, so a pan keeps panning), or, between two given
frames (connect, a loop's end), their interpolation by position. Only the steps below ``s`` run,
so the noisiest steps, where layout is settled, keep the given scene, and the rest are free to
change it. The given latent frames stay clean at t = 0 throughout, as without a held start.
``s = 1`` is plain noise. This is the static-video start of FrameInit (ConsistI2V, Ren et al.
2024), over the whole latent rather than its low frequencies, and carried along the video's own
motion.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kinema.camera_noise import phase_shift

__all__ = ["check_held_start", "content_shift", "held_latents"]

# largest shift content_shift looks for, as a share of the frame's shorter side: several times
# the world's pans per latent frame (0.05), short of its background patterns' period
MAX_SHIFT = 0.1


def check_held_start(value: float, name: str = "held_start") -> float:
    """A held start: a number in (0, 1] (1: plain noise)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(
            f"{name} must be a number greater than 0 and at most 1 (1: plain noise), got {value!r}"
        )
    return float(value)


def content_shift(a: Tensor, b: Tensor, max_shift: float | None = None) -> tuple[float, float]:
    """How far the content of frame ``a`` moved to reach frame ``b`` (both (H, W, 3) or (H, W)):
    ``(dx, dy)`` in pixels, x right and y down, ``b(p) ≈ a(p - d)``, to a fraction of a pixel.
    Phase correlation of the Hann-windowed gray frames; the peak is looked for within
    ``max_shift`` pixels (default MAX_SHIFT of the shorter side), so a still or featureless
    frame pair reads as no shift."""
    gray = [x.double().mean(-1) if x.dim() == 3 else x.double() for x in (a, b)]
    if gray[0].shape != gray[1].shape or gray[0].dim() != 2:
        raise ValueError(
            f"content_shift needs two frames of one size, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    H, W = gray[0].shape
    limit = MAX_SHIFT * min(H, W) if max_shift is None else max_shift
    window = torch.outer(
        torch.hann_window(H, False, dtype=torch.float64),
        torch.hann_window(W, False, dtype=torch.float64),
    )
    fa, fb = (torch.fft.fft2((g - g.mean()) * window) for g in gray)
    cross = fb * fa.conj()
    r = torch.fft.ifft2(cross / (cross.abs() + 1e-12)).real  # (H, W), peak at the shift
    m = int(limit)
    ys, xs = torch.meshgrid(torch.arange(-m, m + 1), torch.arange(-m, m + 1), indexing="ij")
    near = r[ys % H, xs % W]
    if not near.abs().max() > 1e-9:  # a flat frame: nothing to follow
        return 0.0, 0.0
    k = int(near.argmax())
    dy, dx = int(ys.flatten()[k]), int(xs.flatten()[k])

    def at(y: int, x: int) -> float:
        return float(r[y % H, x % W])

    def vertex(left: float, centre: float, right: float) -> float:
        """Offset of the peak of the parabola through three neighbouring values."""
        bend = left - 2 * centre + right
        return 0.0 if bend >= 0 else 0.5 * (left - right) / bend

    fx = vertex(at(dy, dx - 1), at(dy, dx), at(dy, dx + 1))
    fy = vertex(at(dy - 1, dx), at(dy, dx), at(dy + 1, dx))
    return dx + fx, dy + fy


def held_latents(
    given: Tensor, given_frames: Tensor, velocity: tuple[float, float] = (0.0, 0.0)
) -> Tensor:
    """Latents (C, t, h, w) where the frames flagged in ``given_frames`` (t,) bool are ``given``'s
    and each other frame holds the nearest given frame on its one side, moved on by
    ``velocity`` (dx, dy) latent pixels per latent frame for each latent frame it lies from it
    (back for frames before it; circularly, by a phase shift), or the linear interpolation by
    position of the given frames on its two sides."""
    if given.dim() != 4 or given_frames.shape != given.shape[1:2]:
        raise ValueError(
            f"held_latents needs latents (C, t, h, w) and one flag per latent frame, got "
            f"{tuple(given.shape)} and {tuple(given_frames.shape)}"
        )
    known = torch.nonzero(given_frames.bool()).flatten().tolist()
    if not known:
        raise ValueError("held_latents needs at least one given latent frame, got none")
    out = given.clone()
    for j in range(given.shape[1]):
        if j in known:
            continue
        before = [k for k in known if k < j]
        after = [k for k in known if k > j]
        if before and after:
            a, b = before[-1], after[0]
            w = (j - a) / (b - a)
            out[:, j] = (1 - w) * given[:, a] + w * given[:, b]
        else:
            k = before[-1] if before else after[0]
            steps, (vx, vy) = j - k, velocity
            out[:, j] = (
                phase_shift(given[:, k], vx * steps, vy * steps) if vx or vy else given[:, k]
            )
    return out
