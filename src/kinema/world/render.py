"""Draw a scene spec into frames: analytic anti-aliasing from signed distances, no supersampling.

Every layer is a coverage map α ∈ [0, 1] per pixel, computed for all frames at once from a signed
distance in world units divided by the pixel size (`α = clip(0.5 − d / px, 0, 1)`), and composited
back to front: background pattern, floor, paint trails, objects, occluder.
"""

from __future__ import annotations

import numpy as np

from kinema.world.physics import camera_path, object_paths
from kinema.world.spec import (
    COLOR_RGB,
    TONE_RGB,
    TRAIL_WIDTH,
    Background,
    Pattern,
    SceneSpec,
    Shape,
    floor_rgb,
)

_SQRT5 = float(np.sqrt(5.0))


def render_scene(spec: SceneSpec) -> np.ndarray:
    """Render `spec` at its own width, height and frame count → (T, H, W, 3) uint8."""
    wx, wy, px = pixel_world_coords(spec)  # (T, H, W), (T, H, W), (T, 1, 1)
    shape = wx.shape
    image = np.empty((*shape, 3), np.float32)
    image[:] = np.asarray(TONE_RGB[spec.background.tone], np.float32)
    if spec.background.pattern is not Pattern.PLAIN:
        alpha = pattern_coverage(spec.background, wx, wy, px)
        _over(image, alpha, TONE_RGB[spec.background.accent])  # type: ignore[index]
    if spec.floor is not None:
        _over(image, _coverage(spec.floor_y - wy, px), floor_rgb(spec.floor))
    paths = object_paths(spec)  # (N, T, 2)
    for obj, path in zip(spec.objects, paths, strict=True):
        if obj.trail:
            dist = trail_distance(path, wx, wy) - 0.5 * TRAIL_WIDTH
            _over(image, _coverage(dist, px), COLOR_RGB[obj.color])
    for obj, path in zip(spec.objects, paths, strict=True):
        dx = wx - path[:, 0, None, None]
        dy = wy - path[:, 1, None, None]
        _over(
            image,
            _coverage(shape_distance(obj.shape, dx, dy, obj.radius), px),
            COLOR_RGB[obj.color],
        )
    if spec.occluder is not None:
        occ = spec.occluder
        _over(image, _coverage(np.abs(wx - occ.x) - occ.width / 2, px), TONE_RGB[occ.tone])
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def pixel_world_coords(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates of every pixel center at every frame, and the pixel size per frame."""
    centers, zoom = camera_path(spec)  # (T, 2), (T,)
    unit = min(spec.width, spec.height)
    px = (1.0 / (unit * zoom)).astype(np.float32)[:, None, None]  # (T, 1, 1) world units per pixel
    cols = np.arange(spec.width, dtype=np.float32) + 0.5 - spec.width / 2  # (W,)
    rows = np.arange(spec.height, dtype=np.float32) + 0.5 - spec.height / 2  # (H,)
    wx = centers[:, 0, None, None].astype(np.float32) + cols[None, None, :] * px  # (T, 1, W)
    wy = centers[:, 1, None, None].astype(np.float32) + rows[None, :, None] * px  # (T, H, 1)
    wx, wy = np.broadcast_arrays(wx, wy)
    return np.ascontiguousarray(wx), np.ascontiguousarray(wy), px


def shape_distance(shape: Shape, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (world units, negative inside) to a shape of half-extent `r` at the origin.

    Every shape fills the box [−r, r]²: circle of radius r, axis-aligned square of half-side r,
    and an upright isosceles triangle with its apex at the top-center and its base at the bottom.
    """
    if shape is Shape.CIRCLE:
        return np.hypot(dx, dy) - r
    if shape is Shape.SQUARE:
        qx, qy = np.abs(dx) - r, np.abs(dy) - r
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return outside + np.minimum(np.maximum(qx, qy), 0)
    if shape is Shape.TRIANGLE:
        side = (2 * np.abs(dx) - dy - r) / _SQRT5  # the two slanted edges
        return np.maximum(dy - r, side)
    raise ValueError(f"unknown shape {shape!r}; valid: {[s.value for s in Shape]}")


def pattern_coverage(bg: Background, wx: np.ndarray, wy: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Coverage of the background's accent tone: checkers, a lattice of dots, or grid lines."""
    c = bg.cell
    if bg.pattern is Pattern.CHECKERED:
        sx = np.clip(_stripe_distance(wx, c) / px, -0.5, 0.5) * 2  # −1 … 1 across each edge
        sy = np.clip(_stripe_distance(wy, c) / px, -0.5, 0.5) * 2
        return 0.5 - 0.5 * sx * sy
    period = 2 * c
    fx = np.abs(np.mod(wx, period) - c)  # distance to the nearest cell center line, x
    fy = np.abs(np.mod(wy, period) - c)
    if bg.pattern is Pattern.DOTTED:
        return _coverage(np.hypot(fx, fy) - 0.4 * c, px)
    if bg.pattern is Pattern.GRID:
        return _coverage(c - np.maximum(fx, fy) - 0.12 * c, px)
    raise ValueError(f"pattern {bg.pattern!r} has no coverage; valid: checkered, dotted, grid")


def trail_distance(path: np.ndarray, wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    """(T, H, W) distance from each pixel to the polyline painted up to that frame."""
    T = path.shape[0]
    out = np.empty_like(wx)
    out[0] = np.hypot(wx[0] - path[0, 0], wy[0] - path[0, 1])
    if T == 1:
        return out
    static_camera = bool(np.all(wx[0] == wx[-1]) and np.all(wy[0] == wy[-1]))
    if static_camera:
        seg = _segment_distances(path, wx[0], wy[0])  # (T-1, H, W)
        out[1:] = np.minimum(np.minimum.accumulate(seg, axis=0), out[0][None])
        return out
    for k in range(1, T):  # the view moves: each frame sees the painted strokes at new pixels
        out[k] = polyline_distance(path[: k + 1], wx[k], wy[k])
    return out


def polyline_distance(path: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance from points (x, y) (any shape) to the polyline through `path` (P, 2)."""
    if len(path) == 1:
        return np.hypot(x - path[0, 0], y - path[0, 1])
    return _segment_distances(path, x, y).min(axis=0)


def _segment_distances(path: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(P-1, *x.shape) distance from points (x, y) to each segment of the polyline `path`."""
    a = path[:-1].astype(np.float32).reshape(-1, 2, *([1] * x.ndim))  # (S, 2, 1, …)
    b = path[1:].astype(np.float32).reshape(-1, 2, *([1] * x.ndim))
    return _segment_distance(x[None], y[None], a, b)


def _segment_distance(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points (x, y) to segments a→b; a and b are (S, 2, 1, …)."""
    ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]  # (S, 1, 1)
    ex, ey = bx - ax, by - ay
    length2 = np.maximum(ex * ex + ey * ey, 1e-12)
    h = np.clip(((x - ax) * ex + (y - ay) * ey) / length2, 0.0, 1.0)
    return np.hypot(x - ax - h * ex, y - ay - h * ey)


def _stripe_distance(u: np.ndarray, c: float) -> np.ndarray:
    """Signed distance to the nearest stripe edge for stripes of width c: + in even, − in odd."""
    g = np.mod(u, 2 * c)
    dist = np.minimum(np.minimum(g, np.abs(g - c)), 2 * c - g)
    return np.where(g < c, dist, -dist)


def _coverage(signed_distance: np.ndarray, px: np.ndarray) -> np.ndarray:
    return np.clip(0.5 - signed_distance / px, 0.0, 1.0)


def _over(image: np.ndarray, alpha: np.ndarray, rgb: tuple[int, int, int]) -> None:
    """Composite a flat color with coverage `alpha` (T, H, W) over `image` (T, H, W, 3)."""
    color = np.asarray(rgb, np.float32)
    a = alpha[..., None].astype(np.float32)
    image += a * (color - image)
