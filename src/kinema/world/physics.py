"""Where everything is at every frame: object trajectories and the camera path, in world units.

All functions are pure: a spec and frame times in, arrays out. Frame k is at time k / fps.
"""

from __future__ import annotations

import math

import numpy as np

from kinema.world.spec import (
    DIRECTION_VECTOR,
    GRAVITY,
    PAN_DIRECTION,
    PAN_UNITS_PER_S,
    RESTITUTION,
    SPEED_UNITS_PER_S,
    ZOOM_RATE_PER_S,
    Camera,
    Direction,
    Motion,
    ObjectSpec,
    SceneSpec,
)


def frame_times(spec: SceneSpec) -> np.ndarray:
    """(T,) seconds of each frame."""
    return np.arange(spec.num_frames, dtype=np.float64) / spec.fps


def object_paths(spec: SceneSpec) -> np.ndarray:
    """(N, T, 2) world-space centers (x, y) of every object at every frame."""
    t = frame_times(spec)
    collide_time = collision_time(spec)
    paths = []
    for obj in spec.objects:
        if obj.motion is Motion.STATIC:
            xy = np.repeat([[obj.x, obj.y]], len(t), axis=0)
        elif obj.motion is Motion.LINEAR:
            xy = linear_path(obj, t)
        elif obj.motion is Motion.FALL:
            xy = np.stack([np.full_like(t, obj.x), fall_path(obj, spec.floor_y, t)], axis=-1)
        else:  # Motion.COLLIDE
            xy = collide_path(obj, t, collide_time)
        paths.append(xy)
    return np.stack(paths).astype(np.float64)


def linear_path(obj: ObjectSpec, t: np.ndarray) -> np.ndarray:
    """(T, 2) constant-velocity path."""
    if obj.direction is None or obj.speed is None:
        raise ValueError(f"a {obj.motion.value} object needs a direction and a speed, got {obj}")
    dx, dy = DIRECTION_VECTOR[obj.direction]
    v = SPEED_UNITS_PER_S[obj.speed]
    return np.stack([obj.x + dx * v * t, obj.y + dy * v * t], axis=-1)


def fall_path(obj: ObjectSpec, floor_y: float, t: np.ndarray) -> np.ndarray:
    """(T,) y of an object dropped from rest `obj.height` above its floor contact point.

    Exact ballistic arcs between bounces; each bounce keeps RESTITUTION of the speed. Once a bounce
    would rise less than a thousandth of a unit, the object rests on the floor.
    """
    contact = floor_y - obj.radius
    y0 = obj.y
    if y0 > contact + 1e-9:
        raise ValueError(f"a falling object must start above the floor: y={y0:.3f} > {contact:.3f}")
    y = np.empty_like(t)
    # First segment: fall from rest.
    t_hit = math.sqrt(2.0 * (contact - y0) / GRAVITY)
    v_hit = GRAVITY * t_hit
    seg_start, seg_y, seg_v = 0.0, y0, 0.0  # y(τ) = seg_y + seg_v τ + g τ²/2, τ = t − seg_start
    seg_end = t_hit
    order = np.argsort(t)
    for i in order:
        ti = t[i]
        while ti > seg_end and seg_v is not None:
            v_hit *= RESTITUTION
            seg_start, seg_y, seg_v = seg_end, contact, -v_hit
            if v_hit * v_hit / (2 * GRAVITY) < 1e-3:
                seg_v = None  # at rest
                break
            seg_end = seg_start + 2.0 * v_hit / GRAVITY
        if seg_v is None:
            y[i] = contact
        else:
            tau = ti - seg_start
            y[i] = min(contact, seg_y + seg_v * tau + 0.5 * GRAVITY * tau * tau)
    return y


def collision_time(spec: SceneSpec) -> float | None:
    """Seconds until the two COLLIDE objects touch (they approach at equal speed), or None."""
    movers = [o for o in spec.objects if o.motion is Motion.COLLIDE]
    if not movers:
        return None
    if len(movers) != 2:
        raise ValueError(f"a collision needs exactly 2 COLLIDE objects, got {len(movers)}")
    left, right = sorted(movers, key=lambda o: o.x)
    if left.direction is not Direction.RIGHT or right.direction is not Direction.LEFT:
        raise ValueError("colliding objects must move toward each other: left→right, right→left")
    if left.speed is None or left.speed != right.speed:
        raise ValueError("colliding objects must share one speed")
    gap = (right.x - left.x) - (left.radius + right.radius)
    return max(gap, 0.0) / (2.0 * SPEED_UNITS_PER_S[left.speed])


def collide_path(obj: ObjectSpec, t: np.ndarray, t_contact: float | None) -> np.ndarray:
    """(T, 2) path of a COLLIDE object: toward its partner, then back at the same speed."""
    assert t_contact is not None
    xy = linear_path(obj, np.minimum(t, t_contact))
    dx, _ = DIRECTION_VECTOR[obj.direction]  # type: ignore[index]
    v = SPEED_UNITS_PER_S[obj.speed]  # type: ignore[index]
    xy[:, 0] -= dx * v * np.maximum(t - t_contact, 0.0)
    return xy


def camera_path(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray]:
    """View centers (T, 2) in world units and magnifications (T,) (1 = frame-0 view)."""
    return camera_path_at(spec.camera, spec.view_size, frame_times(spec))


def camera_path_at(
    camera: Camera, view_size: tuple[float, float], t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Camera centers (T, 2) and magnifications (T,) at times `t`, frame-0 view `view_size`."""
    vw, vh = view_size
    centers = np.repeat([[vw / 2, vh / 2]], len(t), axis=0)
    zoom = np.ones_like(t)
    if camera in PAN_DIRECTION:
        dx, dy = PAN_DIRECTION[camera]
        centers = centers + np.stack([dx * PAN_UNITS_PER_S * t, dy * PAN_UNITS_PER_S * t], -1)
    elif camera is Camera.ZOOM_IN:
        zoom = ZOOM_RATE_PER_S**t
    elif camera is Camera.ZOOM_OUT:
        zoom = ZOOM_RATE_PER_S ** (-t)
    return centers, zoom


def view_rects_at(camera: Camera, view_size: tuple[float, float], t: np.ndarray) -> np.ndarray:
    """(T, 4) visible world rectangle (x0, y0, x1, y1) at times `t`."""
    centers, zoom = camera_path_at(camera, view_size, t)
    half = np.stack([view_size[0] / 2 / zoom, view_size[1] / 2 / zoom], -1)
    return np.concatenate([centers - half, centers + half], -1)


def view_rects(spec: SceneSpec) -> np.ndarray:
    """(T, 4) visible world rectangle (x0, y0, x1, y1) at every frame."""
    return view_rects_at(spec.camera, spec.view_size, frame_times(spec))


def to_screen(spec: SceneSpec, xy: np.ndarray) -> np.ndarray:
    """World points (..., T, 2) → pixel coordinates (..., T, 2) of each frame (x right, y down)."""
    centers, zoom = camera_path(spec)
    unit = min(spec.width, spec.height)
    scale = (unit * zoom)[:, None]
    return (xy - centers) * scale + np.array([spec.width / 2, spec.height / 2])
