"""WorldBench: does a video show what its scene spec asked for?

A video is analyzed once, without looking at any spec (`analyze_video`): per palette color, the
object's blob in every frame; the camera's motion from the background. Then `score_video` compares
that analysis with a spec and returns pass/fail checks in eight categories:

    color       each object's color is present, and a colored floor's
    shape       each object's shape (template IoU)
    count       as many objects as asked
    motion      each object's initial direction in the world (camera motion removed), or stillness
    bounce      falling objects bounce back up; colliding objects reverse
    camera      static, pan direction, or zoom direction
    permanence  an occluded object is seen, hidden, then seen again
    trail       a painter's stroke is there at the end and has not faded

Spec objects are matched to detected objects by a minimum-cost assignment (color, then shape, then
motion), so a video with one attribute wrong fails that attribute's check and no other.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import permutations

import numpy as np
from scipy import ndimage

from kinema.world.physics import object_paths
from kinema.world.render import pixel_world_coords, polyline_distance
from kinema.world.spec import (
    DIRECTION_VECTOR,
    PAN_DIRECTION,
    PAN_UNITS_PER_S,
    SIZE_RADIUS,
    TRAIL_WIDTH,
    ZOOM_RATE_PER_S,
    Camera,
    Color,
    Direction,
    Motion,
    ObjectSpec,
    SceneSpec,
    Shape,
    Size,
)
from kinema.world.vision import (
    MIN_PAINT_SATURATION,
    PALETTE,
    Blob,
    CameraMotion,
    classify_shape,
    color_labels,
    disk,
    estimate_camera,
    find_floor,
    largest_blob,
)

CATEGORIES = ("color", "shape", "count", "motion", "bounce", "camera", "permanence", "trail")
MIN_TRACK_FRAMES = 0.3  # a color is an object when its blob is found in this fraction of frames
STILL_UNITS = 0.08  # world units an object or camera may drift and still count as still
MOVE_UNITS = 0.05  # displacement that counts as having started to move
MIN_CAMERA_CONFIDENCE = 0.5  # worst pair NCC below which the camera path is not trusted


@dataclass
class Track:
    """One detected object: the blob of one palette color through the clip."""

    color: Color
    blobs: list[Blob | None]  # per frame
    shape: Shape
    world_xy: np.ndarray  # (T, 2) centroid in frame-0 pixels (camera motion removed); NaN if unseen

    @property
    def visible(self) -> np.ndarray:
        return np.array([b is not None for b in self.blobs])


@dataclass
class VideoAnalysis:
    """Everything WorldBench measures from a video alone."""

    height: int
    width: int
    num_frames: int
    tracks: list[Track]
    camera: CameraMotion
    paint_labels: np.ndarray  # (T, H, W) the same with a looser saturation, for paint strokes
    floor: Color | None = None  # the colored floor (a tone floor is background)

    @property
    def unit(self) -> int:
        """Pixels per world unit at frame 0."""
        return min(self.height, self.width)


@dataclass
class Check:
    category: str
    name: str
    passed: bool
    detail: str = ""


@dataclass
class BenchResult:
    checks: list[Check] = field(default_factory=list)

    @property
    def overall(self) -> float:
        return sum(c.passed for c in self.checks) / max(len(self.checks), 1)

    def categories(self) -> dict[str, float]:
        return summarize([self])["categories"]


# --- analysis (video only) ---------------------------------------------------------------------


def analyze_video(frames: np.ndarray) -> VideoAnalysis:
    """Detect objects per palette color and the camera motion in (T, H, W, 3) uint8 frames."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    T, H, W, _ = frames.shape
    unit = min(H, W)
    labels = color_labels(frames)
    floor, floor_pixels = find_floor(labels)
    labels[floor_pixels] = -1  # the floor is background: no object, and it shows the camera
    camera = estimate_camera(frames, objects=labels >= 0)
    radii = [opening_radius(unit, z) for z in camera.zoom]
    min_areas = 0.3 * math.pi * (SIZE_RADIUS[Size.SMALL] * unit * camera.zoom) ** 2
    center = np.array([W / 2, H / 2])
    tracks = []
    for index, color in enumerate(PALETTE):
        blobs = [largest_blob(labels[t] == index, radii[t], min_areas[t]) for t in range(T)]
        seen = [b for b in blobs if b is not None]
        if len(seen) < max(1, MIN_TRACK_FRAMES * T):
            continue
        screen = np.array([b.centroid if b else (np.nan, np.nan) for b in blobs])
        tracks.append(
            Track(
                color=color,
                blobs=blobs,
                shape=_vote_shape(blobs, camera.zoom, H, W),
                world_xy=camera.to_frame0(screen, center),
            )
        )
    paint = color_labels(frames, MIN_PAINT_SATURATION)
    return VideoAnalysis(H, W, T, tracks, camera, paint, floor)


def opening_radius(unit: int, zoom: float = 1.0) -> int:
    """Radius (pixels) of the opening that removes paint strokes (0.035 units wide) but keeps the
    smallest object, at a camera magnification `zoom`."""
    return max(1, int(0.035 * unit * zoom))


def _vote_shape(blobs: list[Blob | None], zoom: np.ndarray, H: int, W: int) -> Shape:
    """Majority shape over the frames where the whole object is seen: not touching the frame edge
    and not partly hidden (its area, corrected for zoom, near its median)."""
    seen = [(b, b.area / z**2) for b, z in zip(blobs, zoom, strict=True) if b is not None]
    typical = float(np.median([a for _, a in seen]))
    whole = [
        b
        for b, a in seen
        if min(b.bbox[:2]) > 0 and b.bbox[2] < W and b.bbox[3] < H and abs(a / typical - 1) < 0.2
    ]
    votes = Counter(classify_shape(_shape_mask(b))[0] for b in whole or [b for b, _ in seen])
    return votes.most_common(1)[0][0]


def _shape_mask(blob: Blob, pad: int = 3) -> np.ndarray:
    """The blob's pixels, cropped, less a one-pixel rim: H.264 stores color at half resolution,
    which bleeds color a pixel outward and rounds corners; eroding the rim undoes most of that."""
    x0, y0, x1, y1 = blob.bbox
    mask = blob.mask[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1))
    return eroded if eroded.sum() >= 8 else mask


# --- scoring (video analysis against a spec) ----------------------------------------------------


def score_video(analysis: VideoAnalysis, spec: SceneSpec) -> BenchResult:
    """All checks of `spec` against an analyzed video."""
    checks = []
    matched = match_objects(analysis, spec)
    unit = analysis.unit
    for i, (obj, track) in enumerate(zip(spec.objects, matched, strict=True)):
        name = f"object {i} ({obj.color.value} {obj.shape.value})"
        checks.append(_attribute_check("color", name, obj.color, track and track.color))
        checks.append(_attribute_check("shape", name, obj.shape, track and track.shape))
        checks.append(_motion_check(name, obj.motion, obj.direction, track, unit))
        if obj.motion in (Motion.FALL, Motion.COLLIDE):
            checks.append(_bounce_check(name, obj.motion, obj.direction, track, unit))
        if obj.trail:
            checks.append(_trail_check(name, analysis, spec, i, track))
    if isinstance(spec.floor, Color):
        checks.append(_attribute_check("color", "floor", spec.floor, analysis.floor))
    found, want = len(analysis.tracks), len(spec.objects)
    checks.append(Check("count", "objects", found == want, f"found {found}, want {want}"))
    checks.append(_camera_check(analysis, spec))
    if spec.occluder is not None:
        checks.append(_permanence_check(matched[0], analysis.camera))
    return BenchResult(checks)


def match_objects(analysis: VideoAnalysis, spec: SceneSpec) -> list[Track | None]:
    """Assign detected tracks to spec objects at least cost (exhaustive: at most 3 objects)."""
    slots: list[Track | None] = [*analysis.tracks, *([None] * len(spec.objects))]
    cost = [[_match_cost(obj, t, analysis.unit) for t in slots] for obj in spec.objects]
    best = min(
        permutations(range(len(slots)), len(spec.objects)),
        key=lambda perm: sum(cost[i][k] for i, k in enumerate(perm)),
    )
    return [slots[k] for k in best]


def _match_cost(obj: ObjectSpec, track: Track | None, unit: int) -> float:
    if track is None:
        return 10.0
    cost = 4.0 * (track.color is not obj.color) + 2.0 * (track.shape is not obj.shape)
    return cost + 1.0 * (not _motion_check("", obj.motion, obj.direction, track, unit).passed)


def _attribute_check(category: str, name: str, want: StrEnum, got: StrEnum | None) -> Check:
    detail = "not found" if got is None else f"found {got.value}"
    return Check(category, name, got is want, detail)


def _motion_check(
    name: str, motion: Motion, direction: Direction | None, track: Track | None, unit: int
) -> Check:
    if track is None:
        return Check("motion", name, False, "not found")
    xy = track.world_xy[track.visible] / unit  # world units
    if len(xy) < 2:
        return Check("motion", name, False, "seen in fewer than 2 frames")
    if motion is Motion.STATIC:
        drift = float(np.linalg.norm(xy - xy[0], axis=-1).max())
        return Check("motion", name, drift < STILL_UNITS, f"drift {drift:.3f} units")
    want = np.array(DIRECTION_VECTOR[Direction.DOWN if motion is Motion.FALL else direction])
    if motion is Motion.LINEAR:
        moved = xy[-1] - xy[0]
    else:  # initial direction, before any bounce
        dist = np.linalg.norm(xy - xy[0], axis=-1)
        k = int(np.argmax(dist > MOVE_UNITS)) if (dist > MOVE_UNITS).any() else len(xy) - 1
        moved = xy[k] - xy[0]
    size = float(np.linalg.norm(moved))
    if size < MOVE_UNITS:
        return Check("motion", name, False, f"moved only {size:.3f} units")
    got = _nearest_direction(moved)
    ok = got is _nearest_direction(want)
    return Check("motion", name, ok, f"moved {size:.2f} units {got.value}")


def _nearest_direction(v: np.ndarray) -> Direction:
    return max(Direction, key=lambda d: float(np.dot(v, DIRECTION_VECTOR[d])))


def _bounce_check(
    name: str, motion: Motion, direction: Direction | None, track: Track | None, unit: int
) -> Check:
    """Falling: y goes down then back up. Colliding: x goes its way, then back."""
    if track is None:
        return Check("bounce", name, False, "not found")
    xy = track.world_xy[track.visible] / unit
    # Position along the way it first moves: down for a fall, its direction for a collision.
    u = xy[:, 1] if motion is Motion.FALL else xy[:, 0] * DIRECTION_VECTOR[direction][0]
    forward = u - u[0]  # how far it has gone its way by each frame
    back = u - np.minimum.accumulate(u[::-1])[::-1]  # how far it comes back after each frame
    turns = (forward > MOVE_UNITS) & (back > 0.5 * MOVE_UNITS)
    ok = bool(turns.any())
    k = int(np.argmax(turns)) if ok else int(np.argmax(forward))
    detail = f"went {forward[k]:.2f}, came back {back[k]:.2f} units"
    return Check("bounce", name, ok, detail)


def _camera_check(analysis: VideoAnalysis, spec: SceneSpec) -> Check:
    cam = analysis.camera
    duration = max(spec.duration, 1e-6)
    moved = (cam.offset[-1] - cam.offset[0]) / analysis.unit  # world units
    log_zoom = float(np.log(cam.zoom[-1] / cam.zoom[0]))
    detail = f"moved ({moved[0]:+.2f}, {moved[1]:+.2f}) units, zoom ×{math.exp(log_zoom):.2f}"
    if cam.confidence < MIN_CAMERA_CONFIDENCE:
        return Check("camera", spec.camera.value, False, f"background not trackable; {detail}")
    pan = PAN_UNITS_PER_S * duration
    zoom = math.log(ZOOM_RATE_PER_S) * duration
    still_pan = np.linalg.norm(moved) < max(STILL_UNITS, 0.3 * pan)
    still_zoom = abs(log_zoom) < 0.3 * zoom
    if spec.camera is Camera.STATIC:
        ok = still_pan and still_zoom
    elif spec.camera in PAN_DIRECTION:
        along = float(np.dot(moved, PAN_DIRECTION[spec.camera]))
        across = float(np.linalg.norm(moved - along * np.array(PAN_DIRECTION[spec.camera])))
        ok = along > 0.5 * pan and across < 0.5 * along and still_zoom
    else:
        sign = 1.0 if spec.camera is Camera.ZOOM_IN else -1.0
        ok = sign * log_zoom > 0.5 * zoom and still_pan
    return Check("camera", spec.camera.value, bool(ok), detail)


def _permanence_check(track: Track | None, camera: CameraMotion) -> Check:
    """Seen at the start, hidden for at least two frames in a row, seen again at the end."""
    name = "occluded object"
    if track is None:
        return Check("permanence", name, False, "not found")
    area = np.array([b.area if b else 0.0 for b in track.blobs]) / camera.zoom**2
    edge = max(1, len(area) // 5)
    full = np.median(area[area > 0])
    start, end = area[:edge].max(), area[-edge:].max()
    gone = area[edge:-edge] < 0.3 * full
    hidden = bool((gone[1:] & gone[:-1]).any())  # two frames in a row: not a detection dropout
    ok = start > 0.6 * full and end > 0.6 * full and hidden
    return Check(
        "permanence",
        name,
        bool(ok),
        f"start {start:.0f}px, hidden {bool(hidden)}, end {end:.0f}px of {full:.0f}px",
    )


def _trail_check(
    name: str, analysis: VideoAnalysis, spec: SceneSpec, index: int, track: Track | None
) -> Check:
    """At the last frame, paint outside the painter's body covers much of the stroke its path
    paints: the paint was laid down and has not faded or moved."""
    if track is None:
        return Check("trail", name, False, "not found")
    obj = spec.objects[index]
    grow = opening_radius(analysis.unit, float(analysis.camera.zoom[-1]))
    paint = analysis.paint_labels[-1] == PALETTE.index(track.color)
    if track.blobs[-1] is not None:
        paint &= ~ndimage.binary_dilation(track.blobs[-1].body, structure=disk(grow + 1))
    # Expected: the stroke the spec paints, as seen in the last frame, outside the painter's body.
    wx, wy, px = pixel_world_coords(spec)
    path = object_paths(spec)[index]
    stroke = polyline_distance(path, wx[-1], wy[-1]) < 0.5 * TRAIL_WIDTH
    body = np.hypot(wx[-1] - path[-1, 0], wy[-1] - path[-1, 1]) < obj.radius + (grow + 1) * px[-1]
    expected = float((stroke & ~body).sum())
    end = float(paint.sum())
    ok = expected > 0 and end > 0.4 * expected
    detail = f"painted {end:.0f}px at the end (expected ≈{expected:.0f})"
    return Check("trail", name, bool(ok), detail)


# --- aggregation ------------------------------------------------------------------------------


def summarize(results: list[BenchResult]) -> dict:
    """Micro-averaged overall pass rate, per-category pass rates, and counts."""
    per: dict[str, list[bool]] = {c: [] for c in CATEGORIES}
    for r in results:
        for c in r.checks:
            per[c.category].append(c.passed)
    checks = [p for v in per.values() for p in v]
    return {
        "overall": float(np.mean(checks)) if checks else 0.0,
        "categories": {c: float(np.mean(v)) for c, v in per.items() if v},
        "checks_per_category": {c: len(v) for c, v in per.items()},
        "n": len(results),
    }


def bench_video(frames: np.ndarray, spec: SceneSpec) -> BenchResult:
    """Analyze and score in one call."""
    return score_video(analyze_video(frames), spec)
