"""Random scene specs: a scenario is drawn, then its free parameters, then the whole clip is checked
(every object stays in view and apart from the others) and redrawn until it passes.

The same `numpy.random.Generator` state always gives the same spec.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import numpy as np

from kinema.world.physics import object_paths, view_rects, view_rects_at
from kinema.world.spec import (
    DIRECTION_VECTOR,
    FLOOR_HEIGHT,
    SIZE_RADIUS,
    SPEED_UNITS_PER_S,
    Background,
    Camera,
    Color,
    Direction,
    Floor,
    Motion,
    ObjectSpec,
    Occluder,
    Pattern,
    SceneSpec,
    Shape,
    Size,
    Speed,
    Tone,
)

T = TypeVar("T")


class Scenario(StrEnum):
    FREE = "free"  # 1–3 objects, each static, moving in a line, or falling
    COLLIDE = "collide"  # two objects meet and bounce apart (and maybe a bystander)
    OCCLUDE = "occlude"  # an object passes behind a pillar and comes out
    PAINT = "paint"  # an object leaves a lasting paint trail


SCENARIO_WEIGHTS: dict[Scenario, float] = {
    Scenario.FREE: 0.46,
    Scenario.COLLIDE: 0.18,
    Scenario.OCCLUDE: 0.18,
    Scenario.PAINT: 0.18,
}
CAMERA_WEIGHTS: dict[Camera, float] = {
    Camera.STATIC: 0.44,
    Camera.PAN_LEFT: 0.1,
    Camera.PAN_RIGHT: 0.1,
    Camera.PAN_UP: 0.1,
    Camera.PAN_DOWN: 0.1,
    Camera.ZOOM_IN: 0.08,
    Camera.ZOOM_OUT: 0.08,
}
COLORED_FLOOR_PROBABILITY = 0.5  # a falling object's floor is an object color, else a tone
MARGIN = 0.03  # world units kept between an object and the frame edge or another object
TRIES_PER_SCENARIO = 60
MAX_TRIES = 600


class _RetryError(Exception):
    """The drawn parameters cannot fit; draw again."""


@dataclass(frozen=True)
class _Stage:
    """What placement needs to know: the view and how the camera moves over the clip."""

    view: tuple[float, float]  # frame-0 view size, world units
    duration: float  # seconds
    start_rect: np.ndarray  # (4,) visible rectangle at the first frame
    end_rect: np.ndarray  # (4,) and at the last


def sample_scene(
    rng: np.random.Generator,
    width: int = 64,
    height: int = 64,
    num_frames: int = 33,
    fps: float = 8.0,
    scenario: Scenario | None = None,
    camera: Camera | None = None,
    exclude_pairs: Collection[tuple[Color, Shape]] = (),
) -> SceneSpec:
    """Draw a valid scene. `scenario`/`camera` fix those choices; otherwise they are drawn too.

    No object of the scene has a (color, shape) pair in `exclude_pairs`: training sets leave out
    WorldBench's held-out combinations this way (`kinema.world.suite.HELDOUT_PAIRS`).
    """
    _check_scene_fps(fps)
    view = (width / min(width, height), height / min(width, height))
    duration = (num_frames - 1) / fps
    for attempt in range(MAX_TRIES):
        if attempt % TRIES_PER_SCENARIO == 0:
            scen = scenario or _choice(rng, SCENARIO_WEIGHTS)
            cam = camera or _choice(rng, CAMERA_WEIGHTS)
            stage = _make_stage(cam, view, duration)
        try:
            objects = _SCENARIOS[scen](rng, stage)
        except _RetryError:
            continue
        if any((o.color, o.shape) in exclude_pairs for o in objects):
            continue
        spec = SceneSpec(
            objects=objects,
            background=_sample_background(rng, textured=cam is not Camera.STATIC),
            camera=cam,
            width=width,
            height=height,
            num_frames=num_frames,
            fps=fps,
            extras={"scenario": scen.value},
        )
        if any(o.motion is Motion.FALL for o in objects):
            spec.floor = _sample_floor(rng, spec)
        if scen is Scenario.OCCLUDE:
            spec.occluder = _sample_occluder(rng, spec)
        occluded_as_asked = spec.occluder is not None or scen is not Scenario.OCCLUDE
        if occluded_as_asked and is_valid(spec):
            return spec
    raise RuntimeError(
        f"no valid {scenario or 'random'} scene with camera {camera or 'random'} found for "
        f"{width}x{height}, {num_frames} frames at {fps} fps in {MAX_TRIES} tries; "
        "shorter clips or slower motion fit more easily"
    )


def _check_scene_fps(fps: float) -> float:
    """``fps`` as a float if it is a finite number > 0, else a ValueError naming it (a scene's
    timing; writing it as a video checks the writer's range, `kinema.video.check_fps`)."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not 0 < fps < math.inf:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    return float(fps)


def is_valid(spec: SceneSpec) -> bool:
    """Every object fully in view at every frame, and objects never overlap (collisions touch)."""
    paths = object_paths(spec)  # (N, T, 2)
    rects = view_rects(spec)  # (T, 4)
    radii = np.array([o.radius for o in spec.objects])
    lo = paths - radii[:, None, None] - MARGIN
    hi = paths + radii[:, None, None] + MARGIN
    if (lo < rects[None, :, :2]).any() or (hi > rects[None, :, 2:]).any():
        return False
    if spec.floor is not None and (hi[..., 1] > spec.floor_y + MARGIN + 1e-6).any():
        return False
    for i in range(len(spec.objects)):
        for j in range(i + 1, len(spec.objects)):
            touching = spec.objects[i].motion is Motion.COLLIDE is spec.objects[j].motion
            gap = np.linalg.norm(paths[i] - paths[j], axis=-1) - radii[i] - radii[j]
            if gap.min() < (-1e-6 if touching else 2 * MARGIN):
                return False
    return spec.occluder is None or _occlusion_happens(spec, paths)


def _occlusion_happens(spec: SceneSpec, paths: np.ndarray) -> bool:
    """The first object starts clear of the pillar, is hidden a while, and ends clear of it."""
    occ = spec.occluder
    assert occ is not None
    x, r = paths[0, :, 0], spec.objects[0].radius
    clear = np.abs(x - occ.x) > occ.width / 2 + r + MARGIN
    hidden = np.abs(x - occ.x) < occ.width / 2 - r
    if not (clear[0] and clear[-1] and hidden.sum() >= 3):
        return False
    # Nothing else may hide behind the pillar.
    others = paths[1:, :, 0]
    radii = np.array([o.radius for o in spec.objects[1:]])[:, None]
    return bool((np.abs(others - occ.x) > occ.width / 2 + radii + MARGIN).all())


# --- scenarios ---------------------------------------------------------------------------------


def _free(rng: np.random.Generator, stage: _Stage) -> list[ObjectSpec]:
    n = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    motions = [Motion.STATIC, Motion.LINEAR, Motion.FALL]
    return [
        _sample_object(rng, stage, color, _pick(rng, motions, p=[0.35, 0.45, 0.2]))
        for color in _distinct_colors(rng, n)
    ]


def _collide(rng: np.random.Generator, stage: _Stage) -> list[ObjectSpec]:
    a_color, b_color, c_color = _distinct_colors(rng, 3)
    speed = _pick(rng, list(Speed))
    a = _sample_object(rng, stage, a_color, Motion.COLLIDE, Direction.RIGHT, speed)
    b = _sample_object(rng, stage, b_color, Motion.COLLIDE, Direction.LEFT, speed)
    # They touch at a time t_c in the middle of the clip, at a point x_m.
    travel = SPEED_UNITS_PER_S[speed] * rng.uniform(0.3, 0.6) * stage.duration
    x0, y0, x1, y1 = _inner_rect(stage)
    x_m = _uniform(rng, x0 + 2 * a.radius + travel + MARGIN, x1 - 2 * b.radius - travel - MARGIN)
    a.x, b.x = x_m - a.radius - travel, x_m + b.radius + travel
    pad = max(a.radius, b.radius) + MARGIN
    a.y = b.y = _uniform(rng, y0 + pad, y1 - pad)
    objects = [a, b]
    if rng.random() < 0.3:
        objects.append(_sample_object(rng, stage, c_color, Motion.STATIC))
    return objects


def _occlude(rng: np.random.Generator, stage: _Stage) -> list[ObjectSpec]:
    colors = _distinct_colors(rng, 2)
    direction = _pick(rng, [Direction.LEFT, Direction.RIGHT])
    objects = [_sample_object(rng, stage, colors[0], Motion.LINEAR, direction, Speed.FAST)]
    if rng.random() < 0.3:
        objects.append(_sample_object(rng, stage, colors[1], Motion.STATIC))
    return objects


def _paint(rng: np.random.Generator, stage: _Stage) -> list[ObjectSpec]:
    colors = _distinct_colors(rng, 2)
    motion = _pick(rng, [Motion.LINEAR, Motion.FALL], p=[0.75, 0.25])
    painter = _sample_object(rng, stage, colors[0], motion, speed=Speed.FAST)
    painter.trail = True
    objects = [painter]
    if rng.random() < 0.3:
        objects.append(_sample_object(rng, stage, colors[1], Motion.STATIC))
    return objects


_SCENARIOS: dict[Scenario, Callable[[np.random.Generator, _Stage], list[ObjectSpec]]] = {
    Scenario.FREE: _free,
    Scenario.COLLIDE: _collide,
    Scenario.OCCLUDE: _occlude,
    Scenario.PAINT: _paint,
}


# --- parts -------------------------------------------------------------------------------------


def _make_stage(camera: Camera, view: tuple[float, float], duration: float) -> _Stage:
    rects = view_rects_at(camera, view, np.array([0.0, duration]))
    if camera in (Camera.ZOOM_IN, Camera.ZOOM_OUT):  # the view is not a sliding window: use
        inner = np.concatenate([rects[:, :2].max(0), rects[:, 2:].min(0)])  # what stays in view
        rects = np.stack([inner, inner])
    return _Stage(view=view, duration=duration, start_rect=rects[0], end_rect=rects[1])


def _inner_rect(stage: _Stage) -> np.ndarray:
    """(4,) the part of the world in view at both the first and the last frame."""
    a, b = stage.start_rect, stage.end_rect
    return np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])])


def _place(rng: np.random.Generator, stage: _Stage, r: float, shift: np.ndarray) -> np.ndarray:
    """A start (x, y) such that start and start + shift are in view at the first and last frame."""
    pad = r + MARGIN
    lo = np.maximum(stage.start_rect[:2] + pad, stage.end_rect[:2] + pad - shift)
    hi = np.minimum(stage.start_rect[2:] - pad, stage.end_rect[2:] - pad - shift)
    return np.array([_uniform(rng, lo[0], hi[0]), _uniform(rng, lo[1], hi[1])])


def _sample_object(
    rng: np.random.Generator,
    stage: _Stage,
    color: Color,
    motion: Motion,
    direction: Direction | None = None,
    speed: Speed | None = None,
) -> ObjectSpec:
    size = _pick(rng, list(Size))
    r = SIZE_RADIUS[size]
    obj = ObjectSpec(shape=_pick(rng, list(Shape)), color=color, size=size, x=0.0, y=0.0)
    obj.motion = motion
    shift = np.zeros(2)
    if motion in (Motion.LINEAR, Motion.COLLIDE):
        obj.direction = direction or _pick(rng, list(Direction))
        obj.speed = speed or _pick(rng, list(Speed))
        shift = np.array(DIRECTION_VECTOR[obj.direction]) * SPEED_UNITS_PER_S[obj.speed]
        shift = shift * stage.duration
    obj.x, obj.y = (float(v) for v in _place(rng, stage, r, shift))
    if motion is Motion.FALL:
        contact = stage.view[1] - FLOOR_HEIGHT - r
        top = _inner_rect(stage)[1] + r + MARGIN
        obj.height = _uniform(rng, 0.25, contact - top)
        obj.y = contact - obj.height
    return obj


def _sample_background(rng: np.random.Generator, textured: bool) -> Background:
    tone = _pick(rng, list(Tone))
    if not textured and rng.random() < 0.55:
        return Background(tone=tone)
    pattern = _pick(rng, [Pattern.CHECKERED, Pattern.DOTTED, Pattern.GRID])
    tones = list(Tone)
    i = tones.index(tone)
    accent = _pick(rng, [t for j, t in enumerate(tones) if abs(i - j) in (1, 2)])
    return Background(
        tone=tone, pattern=pattern, accent=accent, cell=float(rng.uniform(0.09, 0.14))
    )


def _sample_floor(rng: np.random.Generator, spec: SceneSpec) -> Floor:
    """A color that no object has, or a tone other than the background's."""
    if rng.random() < COLORED_FLOOR_PROBABILITY:
        taken = {o.color for o in spec.objects}
        return _pick(rng, [c for c in Color if c not in taken])
    return _pick(rng, [t for t in Tone if t is not spec.background.tone])


def _sample_occluder(rng: np.random.Generator, spec: SceneSpec) -> Occluder | None:
    """A pillar on the mover's path, clear of its start and its end; None if none fits."""
    mover = spec.objects[0]
    tones = list(Tone)
    bg = tones.index(spec.background.tone)
    width = 2 * mover.radius + rng.uniform(0.1, 0.16)
    end_x = float(object_paths(spec)[0, -1, 0])
    pad = mover.radius + width / 2 + MARGIN
    lo, hi = min(mover.x, end_x) + pad, max(mover.x, end_x) - pad
    if lo > hi:
        return None
    tone = _pick(rng, [t for j, t in enumerate(tones) if abs(j - bg) >= 2])
    return Occluder(x=float(rng.uniform(lo, hi)), width=width, tone=tone)


def _distinct_colors(rng: np.random.Generator, n: int) -> list[Color]:
    return [Color(c) for c in rng.choice([c.value for c in Color], size=n, replace=False)]


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    if lo > hi:
        raise _RetryError
    return float(rng.uniform(lo, hi))


def _pick(rng: np.random.Generator, options: list[T], p: list[float] | None = None) -> T:
    return options[int(rng.choice(len(options), p=p))]


def _choice(rng: np.random.Generator, weights: dict[T, float]) -> T:
    keys = list(weights)
    p = np.array([weights[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]
