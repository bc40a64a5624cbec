"""Classical vision for WorldBench: color segmentation, blobs, shape templates, camera motion.

No learned components: HSV thresholds, morphology, connected components, template IoU, and phase
correlation with a scale search. Everything works on uint8 frames (T, H, W, 3).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kinema.world.render import shape_distance
from kinema.world.spec import COLOR_RGB, Color, Shape

# A pixel belongs to an object color when it is saturated and bright enough; its color is the
# palette color with the nearest hue. Background and occluder tones are all unsaturated; a floor
# may be colored, and `find_floor` tells it from the objects.
MIN_SATURATION = 0.4
MIN_VALUE = 0.3
MAX_HUE_DISTANCE = 20.0  # degrees
# Thin paint strokes lose saturation to H.264's half-resolution color; every tone is below 0.03.
MIN_PAINT_SATURATION = 0.2


def rgb_to_hsv(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 (..., 3) → hue in degrees [0, 360), saturation and value in [0, 1]."""
    rgb = frames.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    chroma = v - rgb.min(-1)
    s = np.where(v > 0, chroma / np.maximum(v, 1e-6), 0.0)
    c = np.maximum(chroma, 1e-6)
    h = np.where(v == r, (g - b) / c, np.where(v == g, 2.0 + (b - r) / c, 4.0 + (r - g) / c))
    return np.mod(h * 60.0, 360.0), s, v


PALETTE = list(Color)
PALETTE_HUE = rgb_to_hsv(np.array([COLOR_RGB[c] for c in PALETTE], np.uint8))[0]  # (8,)


def color_labels(frames: np.ndarray, min_saturation: float = MIN_SATURATION) -> np.ndarray:
    """(T, H, W) int8: index into PALETTE of each pixel's object color, or -1 for none."""
    h, s, v = rgb_to_hsv(frames)
    dist = np.abs(h[..., None] - PALETTE_HUE)  # (T, H, W, 8)
    dist = np.minimum(dist, 360.0 - dist)
    nearest = dist.argmin(-1)
    ok = (s >= min_saturation) & (v >= MIN_VALUE) & (dist.min(-1) <= MAX_HUE_DISTANCE)
    return np.where(ok, nearest, -1).astype(np.int8)


# A floor is drawn down to the bottom edge of every frame that shows it, across the whole width;
# objects always stay inside the view. So a color that fills the bottom row is a floor's.
FLOOR_ROW_FRACTION = 0.9  # of the bottom row's pixels
MIN_FLOOR_FRAMES = 0.3  # fraction of the frames that must show the floor


def find_floor(labels: np.ndarray) -> tuple[Color | None, np.ndarray]:
    """A colored floor in `color_labels` output (T, H, W): its color and a (T, H, W) mask of its
    pixels (the regions of that color touching the bottom row); (None, all False) if none."""
    T, _, W = labels.shape
    votes: Counter[int] = Counter()
    for row in labels[:, -1, :]:  # (W,) bottom row of each frame
        values, counts = np.unique(row[row >= 0], return_counts=True)
        if len(counts) and counts.max() >= FLOOR_ROW_FRACTION * W:
            votes[int(values[counts.argmax()])] += 1
    mask = np.zeros(labels.shape, dtype=bool)
    if not votes or votes.most_common(1)[0][1] < MIN_FLOOR_FRAMES * T:
        return None, mask
    index = votes.most_common(1)[0][0]
    for t in range(T):
        regions, _ = ndimage.label(labels[t] == index)
        touching = np.unique(regions[-1][regions[-1] > 0])
        mask[t] = np.isin(regions, touching)
    return PALETTE[index], mask


def disk(radius: int) -> np.ndarray:
    """A boolean disk structuring element of the given pixel radius."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= (radius + 0.5) ** 2


@dataclass
class Blob:
    """The largest compact region of one color in one frame."""

    area: float  # pixels of the raw color mask inside the region
    centroid: tuple[float, float]  # (x, y) pixels
    bbox: tuple[int, int, int, int]  # (x0, y0, x1, y1), inclusive-exclusive
    mask: np.ndarray  # (H, W) bool: raw color pixels of this region (object plus trail stubs)
    body: np.ndarray  # (H, W) bool: the opened region (object without trails)


def largest_blob(mask: np.ndarray, opening_radius: int, min_area: float) -> Blob | None:
    """Open `mask` to drop thin strokes and speckle, and keep its largest component, restored to
    the mask's own pixels around it, if that covers at least `min_area` pixels."""
    body = ndimage.binary_opening(mask, structure=disk(opening_radius))
    labels, n = ndimage.label(body)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(body, labels, index=np.arange(1, n + 1))
    body = labels == int(np.argmax(sizes)) + 1
    region = mask & ndimage.binary_dilation(body, structure=disk(opening_radius))
    if region.sum() < min_area:
        return None
    ys, xs = np.nonzero(body)
    return Blob(
        area=float(region.sum()),
        centroid=(float(xs.mean()) + 0.5, float(ys.mean()) + 0.5),
        bbox=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
        mask=region,
        body=body,
    )


# Area of each shape of half-extent r, in units of r², and its centroid's offset below the box
# center in units of r (the renderer draws all shapes in the box [−r, r]²).
_SHAPE_AREA = {Shape.CIRCLE: np.pi, Shape.SQUARE: 4.0, Shape.TRIANGLE: 2.0}
_SHAPE_CENTROID_DY = {Shape.CIRCLE: 0.0, Shape.SQUARE: 0.0, Shape.TRIANGLE: 1.0 / 3.0}


def classify_shape(body: np.ndarray) -> tuple[Shape, dict[Shape, float]]:
    """Best-fitting shape of a blob by IoU with each template of the same area and centroid."""
    ys, xs = np.nonzero(body)
    area = float(len(xs))
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    gy, gx = np.mgrid[0 : body.shape[0], 0 : body.shape[1]] + 0.5
    scores = {}
    for shape in Shape:
        r = np.sqrt(area / _SHAPE_AREA[shape])
        template = shape_distance(shape, gx - cx, gy - (cy - _SHAPE_CENTROID_DY[shape] * r), r) < 0
        inter = np.logical_and(template, body).sum()
        scores[shape] = float(inter / max(np.logical_or(template, body).sum(), 1))
    return max(scores, key=scores.__getitem__), scores


# --- camera motion ---------------------------------------------------------------------------


@dataclass
class CameraMotion:
    """Camera path recovered from the background, in frame-0 pixels, and how sure we are."""

    offset: np.ndarray  # (T, 2) camera center displacement since frame 0, frame-0 pixels
    zoom: np.ndarray  # (T,) magnification relative to frame 0
    pair_ncc: np.ndarray  # (K,) normalized cross-correlation of each aligned key-frame pair

    @property
    def confidence(self) -> float:
        """The worst pair's NCC, in [−1, 1] (1 for a clip of one frame: nothing to align)."""
        return float(self.pair_ncc.min()) if self.pair_ncc.size else 1.0

    def to_frame0(self, xy: np.ndarray, center: np.ndarray) -> np.ndarray:
        """Screen points (T, 2) of each frame → the same world points in frame 0's pixels."""
        return self.offset + (xy - center) / self.zoom[:, None] + center


def estimate_camera(
    frames: np.ndarray, objects: np.ndarray | None = None, stride: int = 4
) -> CameraMotion:
    """Track the camera from the background between frames `stride` apart.

    `objects` (T, H, W) marks pixels to ignore; by default, every object-colored pixel.
    """
    T, H, W, _ = frames.shape
    gray = frames.astype(np.float32).mean(-1)  # (T, H, W)
    if objects is None:
        objects = color_labels(frames) >= 0
    background = ~ndimage.binary_dilation(objects, structure=np.ones((1, 3, 3)))
    keys = sorted({*range(0, T, stride), T - 1})
    max_shift = MAX_SHIFT_PER_FRAME * min(H, W) * stride
    offsets, log_zoom, nccs = [np.zeros(2)], [0.0], []
    for i, j in itertools.pairwise(keys):
        scale, shift, ncc = align_pair(gray[i], background[i], gray[j], background[j], max_shift)
        offsets.append(offsets[-1] - shift / np.exp(log_zoom[-1]))
        log_zoom.append(log_zoom[-1] + np.log(scale))
        nccs.append(ncc)
    frame_index = np.arange(T)
    offset = np.stack([np.interp(frame_index, keys, np.array(offsets)[:, a]) for a in (0, 1)], -1)
    zoom = np.exp(np.interp(frame_index, keys, log_zoom))
    return CameraMotion(offset=offset, zoom=zoom, pair_ncc=np.array(nccs, dtype=np.float64))


# Largest camera shift looked for between consecutive frames, as a fraction of the shorter side:
# background patterns repeat every ~11 pixels at 64 px, so longer shifts would alias.
MAX_SHIFT_PER_FRAME = 0.02
SCALE_STEP = 0.05  # log-zoom grid between compared frames
MAX_SCALE_STEPS = 4  # so zooms up to exp(±0.2) between compared frames are found


def align_pair(
    a: np.ndarray, a_valid: np.ndarray, b: np.ndarray, b_valid: np.ndarray, max_shift: float
) -> tuple[float, np.ndarray, float]:
    """Similarity (scale about the center, then shift) taking frame `a` to frame `b`.

    Returns (scale, shift (x, y) in a's pixels, NCC of the alignment). A point at x in `a` is at
    `center + scale · (x + shift − center)` in `b`. The identity is kept unless another alignment
    correlates clearly better, so featureless backgrounds read as a still camera.
    """
    if _flat(a, a_valid) and _flat(b, b_valid):
        both = a_valid & b_valid
        stable = bool(both.any()) and float(np.abs(a - b)[both].mean()) < 6.0
        return 1.0, np.zeros(2), 1.0 if stable else 0.0

    def aligned(log_scale: float) -> tuple[np.ndarray, float]:
        """Best shift after undoing `log_scale`: the top correlation peaks, judged by NCC."""
        b_s, valid_s = _unscale(b, b_valid, float(np.exp(log_scale)))
        best_shift, best_score = np.zeros(2), -1.0
        peaks = phase_peaks(_fill(a, a_valid), _fill(b_s, valid_s), max_shift)
        for shift in [np.zeros(2), *peaks]:  # no shift is always a candidate (a pure zoom)
            back = (-shift[1], -shift[0])
            b_aligned = ndimage.shift(b_s, back, order=1, mode="nearest")
            valid_aligned = ndimage.shift(valid_s.astype(np.float32), back, order=0) > 0.5
            score = masked_ncc(a, a_valid, b_aligned, valid_aligned)
            if score > best_score:
                best_shift, best_score = shift, score
        return best_shift, best_score

    identity = masked_ncc(a, a_valid, b, b_valid)
    # Hill-climb the zoom on a coarse grid, then refine with a parabola through the neighbors.
    scores: dict[int, tuple[np.ndarray, float]] = {}

    def at(k: int) -> float:
        if k not in scores:
            scores[k] = aligned(k * SCALE_STEP)
        return scores[k][1]

    k = 0
    while abs(k) < MAX_SCALE_STEPS:
        step = 1 if at(k + 1) > at(k) else -1 if at(k - 1) > at(k) else 0
        if step == 0:
            break
        k += step
    y0, y1, y2 = at(k - 1), at(k), at(k + 1)
    denom = y0 - 2 * y1 + y2
    offset = float(np.clip(0.5 * (y0 - y2) / denom, -0.5, 0.5)) if denom < -1e-9 else 0.0
    log_scale, (shift, score) = k * SCALE_STEP, scores[k]
    if offset:
        refined = aligned((k + offset) * SCALE_STEP)
        if refined[1] >= score:
            log_scale, (shift, score) = (k + offset) * SCALE_STEP, refined
    # Keep the identity unless the alignment clearly explains the change between the frames.
    if score < identity + 0.005 or (1 - score) > 0.8 * (1 - identity):
        return 1.0, np.zeros(2), identity
    return float(np.exp(log_scale)), shift, score


def phase_peaks(
    a: np.ndarray, b: np.ndarray, max_shift: float | None = None, count: int = 4
) -> list[np.ndarray]:
    """Candidate (dx, dy) with b(x) ≈ a(x − d): the highest peaks of windowed phase correlation.

    Peaks are refined to sub-pixel precision; with `max_shift`, only shifts up to that many pixels
    per axis are considered. Several peaks are returned because a small moving region (an object
    masked out of the background) can outscore the true shift on a sparse pattern.
    """
    H, W = a.shape
    window = np.outer(np.hanning(H), np.hanning(W)).astype(np.float32)
    fa = np.fft.rfft2((a - a.mean()) * window)
    fb = np.fft.rfft2((b - b.mean()) * window)
    cross = fb * np.conj(fa)
    corr = np.fft.irfft2(cross / np.maximum(np.abs(cross), 1e-6), s=(H, W))
    if max_shift is not None:  # the window's own edge is no peak: keep 1 pixel inside it
        dy = np.abs(((np.arange(H) + H // 2) % H) - H // 2)[:, None]
        dx = np.abs(((np.arange(W) + W // 2) % W) - W // 2)[None, :]
        corr = np.where((dx < max_shift) & (dy < max_shift), corr, -np.inf)
    local_max = corr == ndimage.maximum_filter(corr, size=3, mode="wrap")
    peaks = np.flatnonzero(local_max & np.isfinite(corr))
    peaks = peaks[np.argsort(corr.ravel()[peaks])[::-1][:count]]
    out = []
    for flat in peaks:
        py, px = divmod(int(flat), W)
        out.append(np.array([_refine_peak(corr[py, :], px), _refine_peak(corr[:, px], py)]))
    return out or [np.zeros(2)]


def _refine_peak(line: np.ndarray, p: int) -> float:
    """Signed shift of peak index p on a circular axis, refined by a parabola through neighbors."""
    n = len(line)
    prev, here, nxt = line[(p - 1) % n], line[p], line[(p + 1) % n]
    sub = 0.0
    if np.isfinite(prev) and np.isfinite(nxt):
        denom = prev - 2 * here + nxt
        sub = float(np.clip(0.5 * (prev - nxt) / denom, -0.5, 0.5)) if abs(denom) > 1e-9 else 0.0
    return ((p + n // 2) % n) - n // 2 + sub


def masked_ncc(a: np.ndarray, a_valid: np.ndarray, b: np.ndarray, b_valid: np.ndarray) -> float:
    """Zero-mean normalized cross-correlation over the pixels valid in both images."""
    m = a_valid & b_valid
    if m.sum() < 16:
        return 0.0
    x, y = a[m] - a[m].mean(), b[m] - b[m].mean()
    denom = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denom) if denom > 1e-6 else 0.0


def _unscale(image: np.ndarray, valid: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample `image` at center + scale·(x − center): undoes a zoom by `scale` about the center."""
    H, W = image.shape
    center = np.array([(H - 1) / 2, (W - 1) / 2])
    matrix = np.array([scale, scale])
    offset = center - scale * center
    out = ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="nearest")
    inside = ndimage.affine_transform(
        valid.astype(np.float32), matrix, offset=offset, order=0, mode="constant", cval=0.0
    )
    return out, inside > 0.5


def _fill(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid (object) pixels with the mean of the valid ones."""
    fill = image[valid].mean() if valid.any() else image.mean()
    return np.where(valid, image, fill)


def _flat(image: np.ndarray, valid: np.ndarray) -> bool:
    return not valid.any() or float(image[valid].std()) < 4.0
