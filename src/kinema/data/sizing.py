"""Native size and duration per clip (NaViT): no fixed buckets.

A clip keeps its aspect ratio: :func:`choose_size` scales it into a pixel budget with both sides
multiples of ``multiple`` (the VAE's space compression times the DiT patch, so the latent cuts
into whole patches), and :func:`crop_box` picks the source region of exactly that aspect ratio.
:func:`choose_frames` picks a length the causal VAE encodes without padding: ``1 + k * tc``
frames give ``1 + k`` latent frames. An image is a 1-frame video.
"""

from __future__ import annotations

import math

__all__ = ["choose_frames", "choose_size", "crop_box", "max_latent_frames"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _cap(size: int, multiple: int) -> int:
    """Largest multiple of `multiple` not above `size` (no upscaling), or `multiple` itself."""
    return max(multiple, size // multiple * multiple)


def choose_size(src_w: int, src_h: int, pixel_budget: int, multiple: int) -> tuple[int, int]:
    """``(width, height)`` with the source's aspect ratio, ``width * height <= pixel_budget`` and
    both sides multiples of ``multiple``.

    The source is scaled down to the budget (never up, except to reach ``multiple`` on a side)
    and each side rounded to a multiple: of the floor/ceil combinations within the budget and
    the source, the one closest in aspect ratio wins (ties: the larger). The rest of the aspect
    ratio is matched by :func:`crop_box`.
    """
    for name, value in (("src_w", src_w), ("src_h", src_h), ("pixel_budget", pixel_budget)):
        _positive_int(name, value)
    _positive_int("multiple", multiple)
    if pixel_budget < multiple * multiple:
        raise ValueError(
            f"pixel_budget={pixel_budget} is below the smallest frame {multiple}x{multiple} "
            f"(= {multiple * multiple} pixels) for multiple={multiple}"
        )
    scale = min(1.0, math.sqrt(pixel_budget / (src_w * src_h)))
    cap_w, cap_h = _cap(src_w, multiple), _cap(src_h, multiple)
    ideal_w, ideal_h = src_w * scale, src_h * scale
    aspect = src_w / src_h
    best: tuple[float, int, int, int] | None = None
    widths = {math.floor(ideal_w / multiple) * multiple, math.ceil(ideal_w / multiple) * multiple}
    heights = {math.floor(ideal_h / multiple) * multiple, math.ceil(ideal_h / multiple) * multiple}
    for w in sorted(widths):
        for h in sorted(heights):
            w_ok, h_ok = min(max(w, multiple), cap_w), min(max(h, multiple), cap_h)
            if w_ok * h_ok > pixel_budget:
                continue
            key = (abs(math.log(w_ok / h_ok / aspect)), -w_ok * h_ok, w_ok, h_ok)
            best = key if best is None or key < best else best
    if best is not None:
        return best[2], best[3]
    # Only reachable when one side was raised to `multiple`: shrink the other into the budget.
    w, h = min(max(math.floor(ideal_w / multiple) * multiple, multiple), cap_w), multiple
    if src_h > src_w:
        w, h = multiple, min(max(math.floor(ideal_h / multiple) * multiple, multiple), cap_h)
        h = min(h, pixel_budget // w // multiple * multiple)
    else:
        w = min(w, pixel_budget // h // multiple * multiple)
    return w, h


def crop_box(
    src_w: int, src_h: int, width: int, height: int, u_x: float = 0.5, u_y: float = 0.5
) -> tuple[int, int, int, int]:
    """``(left, top, crop_w, crop_h)``: the largest source region with the aspect ratio of
    ``width x height``, placed at fractions ``u_x, u_y`` in [0, 1) of the free margin (0.5 is
    about centred)."""
    for name, value in (("src_w", src_w), ("src_h", src_h), ("width", width), ("height", height)):
        _positive_int(name, value)
    if not (0.0 <= u_x <= 1.0 and 0.0 <= u_y <= 1.0):
        raise ValueError(f"u_x and u_y must be in [0, 1], got {u_x!r} and {u_y!r}")
    if src_w * height > width * src_h:  # source wider than the target: crop the sides
        crop_h, crop_w = src_h, max(1, min(src_w, round(src_h * width / height)))
    else:  # source taller (or equal): crop top and bottom
        crop_w, crop_h = src_w, max(1, min(src_h, round(src_w * height / width)))
    left = min(int(u_x * (src_w - crop_w + 1)), src_w - crop_w)
    top = min(int(u_y * (src_h - crop_h + 1)), src_h - crop_h)
    return left, top, crop_w, crop_h


def max_latent_frames(
    available: int, max_frames: int, time_compression: int, latent_multiple: int = 1
) -> int:
    """Most latent frames (a multiple of ``latent_multiple``) a clip of ``available`` frames
    gives within ``max_frames``; 0 when even ``latent_multiple`` latent frames do not fit."""
    for name, value in (
        ("available", available),
        ("max_frames", max_frames),
        ("time_compression", time_compression),
        ("latent_multiple", latent_multiple),
    ):
        _positive_int(name, value)
    latent = 1 + (min(available, max_frames) - 1) // time_compression
    return latent // latent_multiple * latent_multiple


def choose_frames(
    available: int, max_frames: int, time_compression: int, latent_multiple: int = 1
) -> int:
    """Longest length ``1 + k * time_compression <= min(available, max_frames)``.

    ``latent_multiple`` (the DiT's time patch) makes the latent length ``1 + k`` a multiple of
    it. A 1-frame source (an image) gives 1 frame.
    """
    latent = max_latent_frames(available, max_frames, time_compression, latent_multiple)
    if latent == 0:
        shortest = 1 + (latent_multiple - 1) * time_compression
        raise ValueError(
            f"a clip of {min(available, max_frames)} frames (available={available}, "
            f"max_frames={max_frames}) is too short: latent frames must be a multiple of "
            f"{latent_multiple}, which needs at least {shortest} frames"
        )
    return 1 + (latent - 1) * time_compression
