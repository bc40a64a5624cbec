"""Tests for kinema.world: specs, physics, rendering, the sampler, the data set and the suite.

Every test uses tiny clips (at most 96x64 pixels, a few dozen frames) so the file runs in seconds.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np
import pytest

from kinema.video import read_video
from kinema.world.captions import reverse_world_directions
from kinema.world.dataset import (
    MANIFEST,
    ClipRequest,
    clip_record,
    make_world,
    parse_size,
    read_manifest,
)
from kinema.world.physics import (
    camera_path,
    collide_path,
    collision_time,
    fall_path,
    frame_times,
    object_paths,
    to_screen,
    view_rects,
)
from kinema.world.render import render_scene, shape_distance
from kinema.world.sampler import Scenario, is_valid, sample_scene
from kinema.world.spec import (
    COLOR_RGB,
    DIRECTION_VECTOR,
    GRAVITY,
    PAN_DIRECTION,
    PAN_UNITS_PER_S,
    RESTITUTION,
    SIZE_RADIUS,
    SPEED_UNITS_PER_S,
    TONE_RGB,
    ZOOM_RATE_PER_S,
    Background,
    Camera,
    Color,
    Direction,
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
from kinema.world.suite import (
    HELDOUT_PAIRS,
    build_heldout_suite,
    direction_entries,
    has_heldout_pair,
    load_suite,
)

SIZES = [(64, 64), (96, 64), (64, 96), (48, 80)]
REQUIRED_FIELDS = ("path", "prompt", "caption", "spec", "width", "height", "frames", "fps")


# --- helpers -----------------------------------------------------------------------------------


def make_spec(objects: list[ObjectSpec], **kw) -> SceneSpec:
    """A spec on a plain gray background unless told otherwise."""
    kw.setdefault("background", Background(tone=Tone.GRAY))
    return SceneSpec(objects=objects, **kw)


def obj(
    color: Color = Color.RED,
    x: float = 0.5,
    y: float = 0.5,
    shape: Shape = Shape.CIRCLE,
    size: Size = Size.LARGE,
    **kw,
) -> ObjectSpec:
    return ObjectSpec(shape=shape, color=color, size=size, x=x, y=y, **kw)


def color_mask(frames: np.ndarray, rgb: tuple[int, int, int], tol: int = 8) -> np.ndarray:
    """(…, H, W) True where a pixel is within `tol` of `rgb` in every channel."""
    diff = np.abs(frames.astype(np.int16) - np.asarray(rgb, np.int16))
    return diff.max(axis=-1) <= tol


def coverage(frames: np.ndarray, rgb, bg_rgb) -> np.ndarray:
    """Per-pixel coverage of a flat `rgb` composited over a flat `bg_rgb` background."""
    c = np.asarray(rgb, np.float64) - np.asarray(bg_rgb, np.float64)
    a = (frames.astype(np.float64) - np.asarray(bg_rgb, np.float64)) @ c / (c @ c)
    return np.clip(a, 0.0, 1.0)


def weighted_centroid(alpha: np.ndarray) -> np.ndarray:
    """(T, 2) coverage-weighted centroid (x, y) in pixel coordinates (pixel i spans [i, i+1))."""
    _, H, W = alpha.shape
    ys, xs = np.mgrid[:H, :W] + 0.5
    total = alpha.sum(axis=(1, 2))
    return np.stack([(alpha * xs).sum((1, 2)) / total, (alpha * ys).sum((1, 2)) / total], -1)


def sampled(seed: int, n: int, size=(64, 64), **kw) -> list[SceneSpec]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, *size, **kw) for _ in range(n)]


# --- spec --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_spec_json_round_trip(size):
    specs = sampled(seed=size[0] * 1000 + size[1], n=100, size=size)
    for spec in specs:
        text = json.dumps(spec.to_dict())
        back = SceneSpec.from_dict(json.loads(text))
        assert back == spec
        assert json.dumps(back.to_dict()) == text
        assert (back.width, back.height) == size
    # The sample exercises the optional parts of a spec too.
    assert any(s.occluder is not None for s in specs)
    assert any(s.floor is not None for s in specs)
    assert any(o.trail for s in specs for o in s.objects)
    assert any(s.background.pattern is not Pattern.PLAIN for s in specs)


def _base_dict() -> dict:
    spec = make_spec(
        [obj(Color.RED), obj(Color.BLUE, x=0.2, y=0.2, size=Size.SMALL)],
        occluder=Occluder(x=0.8, width=0.2, tone=Tone.BLACK),
        floor=Tone.DARK_GRAY,
    )
    return json.loads(json.dumps(spec.to_dict()))


@pytest.mark.parametrize(
    ("path", "name"),
    [
        (("objects",), "objects"),
        (("background",), "background"),
        (("background", "tone"), "tone"),
        (("objects", 0, "color"), "color"),
        (("objects", 1, "shape"), "shape"),
        (("objects", 0, "x"), "x"),
        (("occluder", "width"), "width"),
    ],
)
def test_from_dict_missing_field_is_named(path, name):
    data = _base_dict()
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    with pytest.raises(ValueError, match=rf"missing field '{name}'"):
        SceneSpec.from_dict(data)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("objects", 0, "color"), "magenta"),
        (("objects", 0, "shape"), "hexagon"),
        (("objects", 0, "size"), "huge"),
        (("objects", 0, "motion"), "teleport"),
        (("camera",), "pan sideways"),
        (("background", "pattern"), "striped"),
        (("background", "tone"), "beige"),
        (("floor",), "plaid"),
    ],
)
def test_from_dict_invalid_enum_value(path, value):
    data = _base_dict()
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    with pytest.raises(ValueError, match=re.escape(value)):
        SceneSpec.from_dict(data)


def test_spec_rejects_duplicate_colors_and_bad_object_counts():
    with pytest.raises(ValueError, match="distinct"):
        make_spec([obj(Color.RED), obj(Color.RED, x=0.2)])
    with pytest.raises(ValueError, match="1 to 3 objects"):
        make_spec([])
    four = [obj(c, x=0.1 + 0.2 * i) for i, c in enumerate(list(Color)[:4])]
    with pytest.raises(ValueError, match="1 to 3 objects"):
        make_spec(four)
    data = _base_dict()
    data["objects"][1]["color"] = data["objects"][0]["color"]
    with pytest.raises(ValueError, match="distinct"):
        SceneSpec.from_dict(data)
    data = _base_dict()
    data["objects"] = []
    with pytest.raises(ValueError, match="1 to 3 objects"):
        SceneSpec.from_dict(data)


def test_colored_floor_round_trips_and_must_differ_from_the_objects():
    spec = make_spec([obj(Color.RED, y=0.6, motion=Motion.FALL, height=0.2)], floor=Color.BLUE)
    back = SceneSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.floor is Color.BLUE
    assert SceneSpec.from_dict({**spec.to_dict(), "floor": "dark gray"}).floor is Tone.DARK_GRAY
    with pytest.raises(ValueError, match="both red"):
        make_spec([obj(Color.RED)], floor=Color.RED)
    with pytest.raises(ValueError, match=r"floor 'plaid' is neither.*'light gray'.*'blue'"):
        SceneSpec.from_dict({**spec.to_dict(), "floor": "plaid"})


def test_colored_floor_is_painted_in_its_color():
    spec = make_spec([obj(Color.RED, y=0.3)], floor=Color.BLUE)
    frames = render_scene(spec)
    assert tuple(frames[0, -2, 5]) == COLOR_RGB[Color.BLUE]
    assert tuple(frames[0, 2, 5]) == TONE_RGB[Tone.GRAY]


def test_spec_rejects_bad_sizes_and_patterns():
    with pytest.raises(ValueError, match="accent"):
        Background(tone=Tone.GRAY, pattern=Pattern.CHECKERED)
    with pytest.raises(ValueError, match=">= 8"):
        make_spec([obj()], width=4)
    with pytest.raises(ValueError, match="num_frames"):
        make_spec([obj()], num_frames=0)
    with pytest.raises(ValueError, match="fps"):
        make_spec([obj()], fps=0.0)


# --- determinism -------------------------------------------------------------------------------


def test_same_seed_same_spec_and_frames():
    a = sample_scene(np.random.default_rng(123), 96, 64)
    b = sample_scene(np.random.default_rng(123), 96, 64)
    assert a == b
    assert np.array_equal(render_scene(a), render_scene(b))
    c = sample_scene(np.random.default_rng(124), 96, 64)
    assert c != a
    assert not np.array_equal(render_scene(c), render_scene(a))


def test_clip_record_is_deterministic():
    request = ClipRequest(index=5, seed=9, width=64, height=96, num_frames=17, fps=8.0)
    spec_a, rec_a = clip_record(request)
    spec_b, rec_b = clip_record(request)
    assert spec_a == spec_b and rec_a == rec_b
    assert rec_a["spec"]["extras"]["seed"] == 9 and rec_a["spec"]["extras"]["index"] == 5
    _, rec_c = clip_record(ClipRequest(6, 9, 64, 96, 17, 8.0))
    assert rec_c["spec"] != rec_a["spec"]


# --- rendering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "num_frames", "fps"),
    [(64, 64, 33, 8.0), (96, 64, 9, 8.0), (64, 96, 9, 8.0), (63, 47, 1, 8.0), (47, 63, 65, 16.0)],
)
def test_render_shape_and_dtype(width, height, num_frames, fps):
    spec = sample_scene(np.random.default_rng(7), width, height, num_frames, fps)
    frames = render_scene(spec)
    assert frames.shape == (num_frames, height, width, 3)
    assert frames.dtype == np.uint8
    # Every object is visible at frame 0 (a scene is never blank).
    assert frames[0].reshape(-1, 3).std(axis=0).max() > 0


def test_render_is_anti_aliased():
    spec = make_spec([obj(Color.BLUE, shape=Shape.CIRCLE)], num_frames=1)
    frame = render_scene(spec)[0]
    alpha = coverage(frame, COLOR_RGB[Color.BLUE], TONE_RGB[Tone.GRAY])
    partial = (alpha > 0.05) & (alpha < 0.95)
    assert partial.sum() >= 10
    # Partial pixels lie on the outline, within a pixel of the circle's edge.
    ys, xs = np.nonzero(partial)
    r_px = SIZE_RADIUS[Size.LARGE] * 64
    dist = np.hypot(xs + 0.5 - 32, ys + 0.5 - 32)
    assert np.all(np.abs(dist - r_px) < 1.0)
    # Each blended pixel is a mix of the object and the background colors.
    mix = alpha[..., None] * np.array(COLOR_RGB[Color.BLUE]) + (1 - alpha[..., None]) * np.array(
        TONE_RGB[Tone.GRAY]
    )
    assert np.abs(mix[partial] - frame[partial]).max() <= 1.5


@pytest.mark.parametrize("shape", list(Shape))
@pytest.mark.parametrize("color", list(Color))
def test_object_center_has_exact_color(color, shape):
    spec = make_spec(
        [obj(color, x=0.45, y=0.55, shape=shape, size=Size.SMALL)],
        background=Background(tone=Tone.WHITE),
        width=64,
        height=64,
        num_frames=1,
    )
    frame = render_scene(spec)[0]
    sx, sy = to_screen(spec, object_paths(spec))[0, 0]
    assert tuple(frame[int(sy), int(sx)]) == COLOR_RGB[color]
    assert tuple(frame[1, 1]) == TONE_RGB[Tone.WHITE]


@pytest.mark.parametrize(
    "camera",
    [Camera.STATIC, Camera.PAN_RIGHT, Camera.PAN_UP, Camera.ZOOM_IN, Camera.ZOOM_OUT],
)
def test_rendered_center_matches_to_screen(camera):
    spec = make_spec(
        [
            obj(
                Color.GREEN,
                x=0.55,
                y=0.4,
                motion=Motion.LINEAR,
                direction=Direction.DOWN_LEFT,
                speed=Speed.SLOW,
            )
        ],
        background=Background(tone=Tone.DARK_GRAY),
        camera=camera,
        width=96,
        height=64,
        num_frames=17,
    )
    assert is_valid(spec)
    frames = render_scene(spec)
    screen = to_screen(spec, object_paths(spec))[0]  # (T, 2)
    alpha = coverage(frames, COLOR_RGB[Color.GREEN], TONE_RGB[Tone.DARK_GRAY])
    assert np.abs(weighted_centroid(alpha) - screen).max() < 0.5
    # The centroid of the pixels of the object's exact color agrees too.
    mask = color_mask(frames, COLOR_RGB[Color.GREEN], tol=2).astype(np.float64)
    assert np.abs(weighted_centroid(mask) - screen).max() < 0.5


def _textured(camera: Camera) -> SceneSpec:
    return make_spec(
        [obj(Color.RED, x=0.75, y=0.5, size=Size.SMALL)],
        background=Background(
            tone=Tone.LIGHT_GRAY, pattern=Pattern.CHECKERED, accent=Tone.DARK_GRAY, cell=0.125
        ),
        camera=camera,
        num_frames=17,
    )


def test_pan_moves_the_background_and_static_camera_does_not():
    static = render_scene(_textured(Camera.STATIC))
    assert all(np.array_equal(static[0], f) for f in static[1:])
    pan = render_scene(_textured(Camera.PAN_LEFT))
    assert not np.array_equal(pan[0], pan[-1])
    # The view moves left, so the picture slides right by PAN_UNITS_PER_S · t · 64 pixels.
    k = 8  # t = 1 s: 5.76 px
    expected = PAN_UNITS_PER_S * k / 8.0 * 64
    row0 = pan[0, 5].astype(np.float64)  # a row of background only (the object is at y=0.5)
    rowk = pan[k, 5].astype(np.float64)
    shifts = list(range(-7, 8))
    err = [np.abs(rowk[10:54] - row0[10 - s : 54 - s]).mean() for s in shifts]
    assert shifts[int(np.argmin(err))] == round(expected)


@pytest.mark.parametrize("camera", [Camera.ZOOM_IN, Camera.ZOOM_OUT])
def test_zoom_scales_object_area(camera):
    spec = make_spec(
        [obj(Color.PURPLE, x=0.5, y=0.5, size=Size.SMALL, shape=Shape.SQUARE)],
        background=Background(tone=Tone.WHITE),
        camera=camera,
        num_frames=33,
    )
    frames = render_scene(spec)
    area = coverage(frames, COLOR_RGB[Color.PURPLE], TONE_RGB[Tone.WHITE]).sum(axis=(1, 2))
    side_px = 2 * SIZE_RADIUS[Size.SMALL] * 64
    assert area[0] == pytest.approx(side_px**2, rel=0.01)
    sign = 1 if camera is Camera.ZOOM_IN else -1
    expected = ZOOM_RATE_PER_S ** (sign * 2 * spec.duration)
    assert area[-1] / area[0] == pytest.approx(expected, rel=0.02)
    assert np.all(np.diff(area) * sign > 0)


def test_shape_distance_signs():
    r = 0.1
    for shape in Shape:
        d = shape_distance(shape, np.array([0.0, 0.3, 0.0]), np.array([0.05, 0.0, -0.3]), r)
        assert d[0] < 0 and d[1] > 0 and d[2] > 0
    # Squares fill their box, circles reach its edge midpoints, triangles have an apex at the top.
    assert shape_distance(Shape.SQUARE, np.array(r), np.array(r), r) == pytest.approx(0)
    assert shape_distance(Shape.CIRCLE, np.array(0.0), np.array(r), r) == pytest.approx(0)
    assert shape_distance(Shape.TRIANGLE, np.array(0.0), np.array(-r), r) == pytest.approx(0)
    assert shape_distance(Shape.TRIANGLE, np.array(r), np.array(r), r) == pytest.approx(0)


# --- physics -----------------------------------------------------------------------------------


def test_fall_bounces_lose_height():
    floor_y, height = 0.88, 0.5
    o = obj(Color.RED, y=0.0, size=Size.SMALL, motion=Motion.FALL, height=height)
    contact = floor_y - o.radius
    o.y = contact - height
    dt = 1e-4
    t = np.arange(0, 6.0, dt)
    y = fall_path(o, floor_y, t)
    assert y[0] == pytest.approx(o.y)
    assert np.all(y <= contact + 1e-12)  # never below the floor contact
    t_hit = math.sqrt(2 * height / GRAVITY)
    first = int(np.argmax(np.diff(y) < 0))  # the first step back up: the first bounce
    assert t[first] == pytest.approx(t_hit, abs=2 * dt)
    assert y[first] == pytest.approx(contact, abs=GRAVITY * t_hit * dt)
    # Peaks between bounces: each rises RESTITUTION² as high as the one before.
    inner = (y[1:-1] < y[:-2]) & (y[1:-1] <= y[2:]) & (y[1:-1] < contact - 1e-3)
    peaks = contact - y[1:-1][inner]
    assert len(peaks) >= 3
    assert np.all(np.diff(peaks) < 0)
    assert peaks[0] == pytest.approx(height * RESTITUTION**2, rel=1e-3)
    assert peaks[1:4] / peaks[:3] == pytest.approx([RESTITUTION**2] * 3, rel=1e-2)
    # It comes to rest, and the result does not depend on the order of the times.
    assert fall_path(o, floor_y, np.array([60.0]))[0] == pytest.approx(contact)
    perm = np.random.default_rng(0).permutation(len(t))[:2000]
    assert np.array_equal(fall_path(o, floor_y, t[perm]), y[perm])
    with pytest.raises(ValueError, match="above the floor"):
        fall_path(obj(y=contact + 0.05, size=Size.SMALL, motion=Motion.FALL), floor_y, t[:3])


@pytest.mark.parametrize("speed", list(Speed))
@pytest.mark.parametrize("direction", list(Direction))
def test_linear_speed_and_direction(direction, speed):
    spec = make_spec(
        [obj(x=0.5, y=0.5, motion=Motion.LINEAR, direction=direction, speed=speed)],
        num_frames=9,
    )
    path = object_paths(spec)[0]
    step = np.diff(path, axis=0) * spec.fps  # world units per second
    expected = np.array(DIRECTION_VECTOR[direction]) * SPEED_UNITS_PER_S[speed]
    assert np.allclose(step, expected, atol=1e-9)
    assert np.allclose(path[0], [0.5, 0.5])


def _collide_specs() -> list[SceneSpec]:
    specs = sampled(seed=11, n=4, size=(96, 64), scenario=Scenario.COLLIDE)
    specs.append(
        make_spec(
            [
                obj(
                    Color.RED,
                    x=0.3,
                    y=0.5,
                    size=Size.SMALL,
                    motion=Motion.COLLIDE,
                    direction=Direction.RIGHT,
                    speed=Speed.FAST,
                ),
                obj(
                    Color.BLUE,
                    x=1.1,
                    y=0.5,
                    size=Size.LARGE,
                    motion=Motion.COLLIDE,
                    direction=Direction.LEFT,
                    speed=Speed.FAST,
                ),
            ],
            width=96,
            height=64,
        )
    )
    return specs


@pytest.mark.parametrize("k", range(5))
def test_collision_touches_then_separates(k):
    spec = _collide_specs()[k]
    movers = sorted([o for o in spec.objects if o.motion is Motion.COLLIDE], key=lambda o: o.x)
    assert len(movers) == 2
    left, right = movers
    t_c = collision_time(spec)
    assert t_c is not None and 0 < t_c < spec.duration
    t = np.sort(np.concatenate([np.linspace(0, spec.duration, 4001), [t_c]]))
    xl = collide_path(left, t, t_c)[:, 0]
    xr = collide_path(right, t, t_c)[:, 0]
    gap = xr - xl - left.radius - right.radius
    i_c = int(np.searchsorted(t, t_c))
    assert abs(gap[i_c]) < 1e-9  # they touch at the collision time
    assert gap.min() > -1e-9  # never overlap, never pass through each other
    assert np.all(xl < xr)
    assert np.all(np.diff(gap[: i_c + 1]) < 0) and np.all(np.diff(gap[i_c:]) > 0)
    # They bounce back at the speed they came with.
    v = SPEED_UNITS_PER_S[left.speed]
    dt = t[1] - t[0]
    assert (xl[1] - xl[0]) / dt == pytest.approx(v, rel=1e-6)
    assert (xl[-1] - xl[-2]) / (t[-1] - t[-2]) == pytest.approx(-v, rel=1e-6)
    assert (xr[-1] - xr[-2]) / (t[-1] - t[-2]) == pytest.approx(v, rel=1e-6)
    assert is_valid(spec)


def test_collision_time_errors():
    assert collision_time(make_spec([obj()])) is None
    one = make_spec([obj(motion=Motion.COLLIDE, direction=Direction.RIGHT, speed=Speed.SLOW)])
    with pytest.raises(ValueError, match="exactly 2"):
        collision_time(one)
    apart = make_spec(
        [
            obj(
                Color.RED, x=0.2, motion=Motion.COLLIDE, direction=Direction.LEFT, speed=Speed.SLOW
            ),
            obj(
                Color.BLUE,
                x=0.8,
                motion=Motion.COLLIDE,
                direction=Direction.RIGHT,
                speed=Speed.SLOW,
            ),
        ]
    )
    with pytest.raises(ValueError, match="toward each other"):
        collision_time(apart)
    mixed = make_spec(
        [
            obj(
                Color.RED, x=0.2, motion=Motion.COLLIDE, direction=Direction.RIGHT, speed=Speed.SLOW
            ),
            obj(
                Color.BLUE, x=0.8, motion=Motion.COLLIDE, direction=Direction.LEFT, speed=Speed.FAST
            ),
        ]
    )
    with pytest.raises(ValueError, match="one speed"):
        collision_time(mixed)


@pytest.mark.parametrize("camera", list(Camera))
def test_camera_path(camera):
    spec = make_spec([obj()], camera=camera, width=96, height=64, num_frames=17)
    centers, zoom = camera_path(spec)
    t = frame_times(spec)
    vw, vh = spec.view_size
    assert (vw, vh) == (1.5, 1.0)
    assert np.allclose(centers[0], [vw / 2, vh / 2]) and zoom[0] == 1.0
    velocity = np.diff(centers, axis=0) * spec.fps
    pan = np.array(PAN_DIRECTION.get(camera, (0.0, 0.0))) * PAN_UNITS_PER_S
    assert np.allclose(velocity, pan, atol=1e-9)
    if camera is Camera.ZOOM_IN:
        assert np.allclose(zoom, ZOOM_RATE_PER_S**t)
    elif camera is Camera.ZOOM_OUT:
        assert np.allclose(zoom, ZOOM_RATE_PER_S ** (-t))
    else:
        assert np.all(zoom == 1.0)
    rects = view_rects(spec)
    assert np.allclose(rects[:, 2] - rects[:, 0], vw / zoom)
    assert np.allclose(rects[:, 3] - rects[:, 1], vh / zoom)
    assert np.allclose((rects[:, :2] + rects[:, 2:]) / 2, centers)
    # A world point at a view corner maps to the matching pixel corner at every frame.
    corners = to_screen(spec, rects[:, :2][None])[0]
    assert np.allclose(corners, 0.0, atol=1e-9)


# --- occlusion and paint -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "size", "camera"),
    [(1, (96, 64), Camera.STATIC), (2, (64, 64), Camera.STATIC), (3, (96, 64), Camera.PAN_RIGHT)],
)
def test_occluded_object_disappears_and_reappears(seed, size, camera):
    spec = sample_scene(
        np.random.default_rng(seed), *size, scenario=Scenario.OCCLUDE, camera=camera
    )
    assert spec.occluder is not None
    frames = render_scene(spec)
    mover = spec.objects[0]
    counts = color_mask(frames, COLOR_RGB[mover.color]).sum(axis=(1, 2))
    assert counts[0] > 0 and counts[-1] > 0
    assert counts[1:-1].min() == 0
    # Any other object stays in view all along.
    for other in spec.objects[1:]:
        assert color_mask(frames, COLOR_RGB[other.color]).sum(axis=(1, 2)).min() > 0


@pytest.mark.parametrize(
    ("seed", "size"), [(1, (64, 64)), (2, (96, 64)), (3, (64, 96)), (4, (64, 96)), (10, (96, 64))]
)
def test_paint_trail_grows_and_stays(seed, size):
    spec = sample_scene(
        np.random.default_rng(seed), *size, scenario=Scenario.PAINT, camera=Camera.STATIC
    )
    painter = spec.objects[0]
    assert painter.trail
    frames = render_scene(spec)
    painted = color_mask(frames, COLOR_RGB[painter.color], tol=40)  # the stroke is ~2 px wide
    counts = painted.sum(axis=(1, 2))
    assert counts[-1] > counts[0] + 10
    # A point of the stroke: the middle of a straight stroke, or the top of a drop (bounces never
    # climb back to it). It is painted at the end, unpainted before the painter reaches it, and
    # unchanged in every frame after that where the painter is away from it.
    path = object_paths(spec)[0]
    screen = to_screen(spec, path[None])[0]
    m = 0 if painter.motion is Motion.FALL else spec.num_frames // 2
    cx, cy = screen[m].astype(int)
    window = frames[:, cy - 2 : cy + 3, cx - 2 : cx + 3]
    r_px = painter.radius * min(size)
    away = np.linalg.norm(screen - screen[m], axis=-1) > r_px * math.sqrt(2) + 4
    assert away[-1]
    assert color_mask(window[-1], COLOR_RGB[painter.color], tol=40).any()
    if m > 0:
        assert away[0]
        assert not color_mask(window[0], COLOR_RGB[painter.color], tol=40).any()
    later = [k for k in range(m, spec.num_frames) if away[k]]
    assert len(later) >= 3
    for k in later:
        assert np.array_equal(window[k], window[-1]), k


def test_render_without_trail_leaves_no_paint():
    spec = make_spec(
        [
            obj(
                Color.ORANGE,
                x=0.3,
                motion=Motion.LINEAR,
                direction=Direction.RIGHT,
                speed=Speed.FAST,
            )
        ],
        num_frames=17,
    )
    frames = render_scene(spec)
    start = to_screen(spec, object_paths(spec))[0, 0].astype(int)
    assert tuple(frames[-1, start[1], start[0]]) == TONE_RGB[Tone.GRAY]
    spec.objects[0].trail = True
    frames = render_scene(spec)
    assert tuple(frames[-1, start[1], start[0]]) == COLOR_RGB[Color.ORANGE]


# --- sampler -----------------------------------------------------------------------------------


def test_sampler_covers_every_scenario_and_camera():
    rng = np.random.default_rng(2024)
    specs = [sample_scene(rng, *SIZES[i % 4]) for i in range(300)]
    assert all(is_valid(s) for s in specs)
    assert set(Counter(s.extras["scenario"] for s in specs)) == {s.value for s in Scenario}
    assert set(Counter(s.camera for s in specs)) == set(Camera)


def test_sampler_draws_tone_and_color_floors_apart_from_the_objects():
    rng = np.random.default_rng(11)
    floors = [s for s in (sample_scene(rng, scenario=Scenario.FREE) for _ in range(200)) if s.floor]
    colored = [s for s in floors if isinstance(s.floor, Color)]
    assert 0.3 < len(colored) / len(floors) < 0.7  # COLORED_FLOOR_PROBABILITY = 0.5
    assert all(s.floor not in {o.color for o in s.objects} for s in colored)
    toned = [s for s in floors if isinstance(s.floor, Tone)]
    assert toned and all(s.floor is not s.background.tone for s in toned)


@pytest.mark.parametrize("scenario", list(Scenario))
def test_forced_scenario(scenario):
    for spec in sampled(seed=5, n=5, size=(96, 64), scenario=scenario):
        assert spec.extras["scenario"] == scenario.value
        assert is_valid(spec)
        motions = [o.motion for o in spec.objects]
        assert (motions.count(Motion.COLLIDE) == 2) == (scenario is Scenario.COLLIDE)
        assert (spec.occluder is not None) == (scenario is Scenario.OCCLUDE)
        assert any(o.trail for o in spec.objects) == (scenario is Scenario.PAINT)
        assert (spec.floor is not None) == (Motion.FALL in motions)


@pytest.mark.parametrize("camera", list(Camera))
def test_forced_camera(camera):
    for spec in sampled(seed=6, n=5, size=(64, 64), camera=camera):
        assert spec.camera is camera
        assert is_valid(spec)
        if camera is not Camera.STATIC:  # a moving camera needs a textured background to see
            assert spec.background.pattern is not Pattern.PLAIN


def test_forced_scenario_and_camera_together():
    spec = sample_scene(
        np.random.default_rng(0), 96, 64, scenario=Scenario.PAINT, camera=Camera.ZOOM_OUT
    )
    assert spec.extras["scenario"] == "paint" and spec.camera is Camera.ZOOM_OUT


def test_impossible_request_raises():
    with pytest.raises(RuntimeError, match=r"collide.*pan left.*64x64.*200 frames"):
        sample_scene(
            np.random.default_rng(0),
            64,
            64,
            200,
            scenario=Scenario.COLLIDE,
            camera=Camera.PAN_LEFT,
        )


def test_is_valid_rejects_bad_scenes():
    assert is_valid(make_spec([obj(x=0.5, y=0.5)]))
    assert not is_valid(make_spec([obj(x=0.05, y=0.5)]))  # sticks out of the frame
    assert not is_valid(make_spec([obj(Color.RED, x=0.4), obj(Color.BLUE, x=0.6)]))  # overlap
    runaway = make_spec(
        [obj(motion=Motion.LINEAR, direction=Direction.RIGHT, speed=Speed.FAST)], num_frames=33
    )
    assert not is_valid(runaway)  # leaves the frame before the end
    # A static object near the left edge is fine until the camera pans away from it.
    near_edge = make_spec([obj(x=0.2, y=0.5, size=Size.SMALL)], num_frames=33)
    assert is_valid(near_edge)
    for camera in (Camera.PAN_RIGHT, Camera.ZOOM_IN):
        near_edge.camera = camera
        assert not is_valid(near_edge), camera
    near_edge.camera = Camera.PAN_LEFT
    assert is_valid(near_edge)


# --- data set ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """The same 6-clip data set made with 2 workers and with 1, and one with another seed."""
    root = tmp_path_factory.mktemp("worlds")
    sizes = [(64, 64), (96, 64), (64, 96)]
    kw = dict(n=6, sizes=sizes, num_frames=9, progress=False)
    a = make_world(root / "a", seed=3, workers=2, **kw)
    b = make_world(root / "b", seed=3, workers=1, **kw)
    c = make_world(root / "c", seed=4, workers=1, **kw)
    return a, b, c


def test_make_world_writes_clips_and_manifest(worlds):
    manifest = worlds[0]
    assert manifest.name == MANIFEST
    assert sorted(p.name for p in manifest.parent.glob("*.mp4")) == [
        f"clip_{i:06d}.mp4" for i in range(6)
    ]
    records = read_manifest(manifest)
    assert len(records) == 6
    sizes = [(64, 64), (96, 64), (64, 96)]
    for i, record in enumerate(records):
        for key in REQUIRED_FIELDS:
            assert key in record, key
        assert (record["width"], record["height"]) == sizes[i % 3]
        assert record["frames"] == 9 and record["fps"] == 8.0
        spec = SceneSpec.from_dict(record["spec"])
        assert (spec.width, spec.height, spec.num_frames) == (*sizes[i % 3], 9)
        video = read_video(record["path"])
        assert video.frames.shape == (9, record["height"], record["width"], 3)
        # The clip shows its spec (up to lossy compression).
        truth = render_scene(spec).astype(np.float64)
        assert np.abs(video.frames - truth).mean() < 4.0
        assert record["prompt"] and record["caption"]
    # Every clip is drawn from its own generator: no two specs are alike.
    scenes = [{k: v for k, v in r["spec"].items() if k != "extras"} for r in records]
    assert all(a != b for i, a in enumerate(scenes) for b in scenes[i + 1 :])


def test_make_world_same_seed_same_data(worlds):
    a, b, c = worlds
    assert a.read_text() == b.read_text()
    for ra, rb in zip(read_manifest(a), read_manifest(b), strict=True):
        fa = read_video(ra["path"]).frames.astype(np.float64)
        fb = read_video(rb["path"]).frames.astype(np.float64)
        # H.264 encoding is not always bit-reproducible (see the report), but the clips agree.
        assert fa.shape == fb.shape
        assert np.abs(fa - fb).mean() < 1.0
    ra, rc = read_manifest(a), read_manifest(c)
    assert [r["spec"] for r in ra] != [r["spec"] for r in rc]
    assert all(x["spec"] != y["spec"] for x, y in zip(ra, rc, strict=True))


def test_make_world_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n must be"):
        make_world(tmp_path, n=0, progress=False)
    with pytest.raises(ValueError, match="frames"):
        make_world(tmp_path, n=1, num_frames=0, progress=False)
    with pytest.raises(ValueError, match="sizes"):
        make_world(tmp_path, n=1, sizes=[], progress=False)


def test_read_manifest(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "a.mp4", "x": 1}\n\n{"path": "sub/b.mp4"}\n')
    records = read_manifest(path)
    assert [r["path"] for r in records] == [
        str((tmp_path / "a.mp4").resolve()),
        str((tmp_path / "sub" / "b.mp4").resolve()),
    ]
    path.write_text('{"path": "a.mp4"}\n{"path": "b.mp4",\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:2")):
        read_manifest(path)
    path.write_text('{"path": "a.mp4"}\n{"prompt": "no path"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:2") + ".*'path'"):
        read_manifest(path)


def test_parse_size():
    assert parse_size("96x64") == (96, 64)
    assert parse_size("64X96") == (64, 96)
    for bad in ["64", "4x4", "64x", "x64", "axb", "64x64x64", "8x4"]:
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            parse_size(bad)


# --- suite -------------------------------------------------------------------------------------


def test_direction_entries_are_the_suite_prompts_that_name_a_direction_in_order():
    suite = load_suite()
    every = direction_entries()
    assert 0 < len(every) < len(suite)
    assert [e["id"] for e in every] == [e["id"] for e in suite if e in every]
    assert all(reverse_world_directions(e["prompt"]) for e in every)
    assert not any(reverse_world_directions(e["prompt"]) for e in suite if e not in every)
    assert direction_entries("suite", 5) == every[:5]


def test_suite_is_stratified_and_well_formed():
    suite = load_suite()
    assert len(suite) >= 200
    assert len({e["id"] for e in suite}) == len(suite)
    specs = [SceneSpec.from_dict(e["spec"]) for e in suite]
    assert {s.extras["scenario"] for s in specs} == {s.value for s in Scenario}
    assert {s.camera for s in specs} == set(Camera)
    shapes = {
        "square" if s.width == s.height else "landscape" if s.width > s.height else "portrait"
        for s in specs
    }
    assert shapes == {"square", "landscape", "portrait"}
    for entry, spec in zip(suite, specs, strict=True):
        assert (entry["width"], entry["height"]) == (spec.width, spec.height)
        assert entry["frames"] == spec.num_frames and entry["fps"] == spec.fps
        assert isinstance(entry["seed"], int)
        words = set(re.findall(r"[a-z]+", entry["prompt"].lower()))
        for o in spec.objects:
            assert o.color.value in words, (entry["id"], o.color, entry["prompt"])


def test_suite_specs_are_valid_scenes():
    """The committed specs are frozen, so a vocabulary or physics change can silently break them."""
    bad = [e["id"] for e in load_suite() if not is_valid(SceneSpec.from_dict(e["spec"]))]
    assert not bad, f"{len(bad)} suite specs are no longer valid scenes, e.g. {bad[:5]}"


# --- held-out attribute pairs ---------------------------------------------------------------------


def test_exclude_pairs_never_sampled():
    seen = Counter()
    for k in range(150):
        spec = sample_scene(np.random.default_rng([7, k]), 64, 64, exclude_pairs=HELDOUT_PAIRS)
        assert not has_heldout_pair(spec)
        seen.update((o.color, o.shape) for o in spec.objects)
    # every other pair still occurs: only the held-out combinations are missing
    assert len(seen) >= 8 * 3 - len(HELDOUT_PAIRS) - 2


def test_unexcluded_sampling_draws_heldout_pairs():
    specs = [sample_scene(np.random.default_rng([7, k]), 64, 64) for k in range(150)]
    assert any(has_heldout_pair(s) for s in specs)


def test_clip_record_exclude_heldout():
    for i in range(40):
        spec, record = clip_record(ClipRequest(i, 3, 64, 64, 9, 8.0, exclude_heldout=True))
        assert not has_heldout_pair(spec)
        assert record["spec"] == spec.to_dict()


def assert_same_json(a: object, b: object, where: str = "") -> None:
    """``a`` and ``b`` (parsed JSON) hold the same values, floats to within a few units in the
    last place: numpy releases may round a float function's result differently."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), where
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_json(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_json(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_assert_same_json_tells_rounding_from_a_change():
    assert_same_json({"y": [0.406955979702663, 2]}, {"y": [0.40695597970266295, 2]})
    with pytest.raises(AssertionError, match=r"\.y\[0\]"):
        assert_same_json({"y": [0.4069559797, 2]}, {"y": [0.4069559798, 2]})
    with pytest.raises(AssertionError, match="'left' != 'right'"):
        assert_same_json({"d": "left"}, {"d": "right"})


def test_heldout_suite_is_committed_and_holds_pairs():
    entries = load_suite("heldout")
    assert_same_json(entries, json.loads(json.dumps(build_heldout_suite())))
    assert len(entries) == 60
    assert all(has_heldout_pair(SceneSpec.from_dict(e["spec"])) for e in entries)
    assert {(e["width"], e["height"]) for e in entries} == {(64, 64), (96, 64), (64, 96)}
    with pytest.raises(ValueError, match="unknown suite"):
        load_suite("nope")
