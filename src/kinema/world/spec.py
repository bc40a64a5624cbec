"""The world's vocabulary and its scene spec: a dataclass that says everything a clip shows.

Coordinates are *world units* with y pointing down (image convention). One world unit is the
shorter side of the frame at zoom 1, so at frame 0 the camera sees `[0, aspect_w] × [0, aspect_h]`,
where the shorter of the two is 1. Objects, the floor, the occluder and paint trails live in world
coordinates; the camera is a moving window onto them. Speeds are in world units per second, so a
clip's motion is the same whatever its resolution or frame rate.

A `SceneSpec` round-trips through JSON (`to_dict` / `from_dict`); it is the ground truth that the
renderer draws, the captions describe and WorldBench checks a video against.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Color(StrEnum):
    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    GREEN = "green"
    CYAN = "cyan"
    BLUE = "blue"
    PURPLE = "purple"
    PINK = "pink"


# Saturated object colors, spaced in hue so they stay distinguishable after compression.
COLOR_RGB: dict[Color, tuple[int, int, int]] = {
    Color.RED: (225, 35, 35),
    Color.ORANGE: (245, 135, 20),
    Color.YELLOW: (240, 215, 25),
    Color.GREEN: (35, 175, 55),
    Color.CYAN: (25, 195, 215),
    Color.BLUE: (35, 75, 230),
    Color.PURPLE: (140, 55, 210),
    Color.PINK: (240, 90, 175),
}


class Tone(StrEnum):
    """Neutral (unsaturated) tones for backgrounds, floors and occluders."""

    WHITE = "white"
    LIGHT_GRAY = "light gray"
    GRAY = "gray"
    DARK_GRAY = "dark gray"
    BLACK = "black"


TONE_RGB: dict[Tone, tuple[int, int, int]] = {
    Tone.WHITE: (235, 235, 230),
    Tone.LIGHT_GRAY: (180, 180, 178),
    Tone.GRAY: (128, 128, 128),
    Tone.DARK_GRAY: (70, 70, 72),
    Tone.BLACK: (20, 20, 22),
}

# A floor is a neutral tone or one of the object colors ("a red ball bounces on a blue floor").
# Tone and Color values share no word, so a floor's value alone says which it is.
Floor = Tone | Color


def floor_from_value(value: str) -> Floor:
    """The tone or color named by `value` ("gray", "blue"); ValueError lists the valid names."""
    for kind in (Tone, Color):
        try:
            return kind(value)
        except ValueError:
            pass
    valid = [t.value for t in Tone] + [c.value for c in Color]
    raise ValueError(f"floor {value!r} is neither a tone nor a color; valid: {valid}")


def floor_rgb(floor: Floor) -> tuple[int, int, int]:
    """The floor's paint: a tone's gray or an object color's RGB."""
    return COLOR_RGB[floor] if isinstance(floor, Color) else TONE_RGB[floor]


class Pattern(StrEnum):
    PLAIN = "plain"
    CHECKERED = "checkered"
    DOTTED = "dotted"
    GRID = "grid"


class Shape(StrEnum):
    CIRCLE = "circle"
    SQUARE = "square"
    TRIANGLE = "triangle"


class Size(StrEnum):
    SMALL = "small"
    LARGE = "large"


# Object radius in world units: circle radius, square half-side, triangle inradius × 2.
SIZE_RADIUS: dict[Size, float] = {Size.SMALL: 0.09, Size.LARGE: 0.14}


class Motion(StrEnum):
    STATIC = "static"
    LINEAR = "linear"  # straight line at constant speed in one of 8 directions
    FALL = "fall"  # falls under gravity and bounces on the floor
    COLLIDE = "collide"  # moves horizontally into another object and bounces off it


class Direction(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    UP = "up"
    DOWN = "down"
    UP_LEFT = "up-left"
    UP_RIGHT = "up-right"
    DOWN_LEFT = "down-left"
    DOWN_RIGHT = "down-right"


# Unit vectors in world coordinates (y down).
DIRECTION_VECTOR: dict[Direction, tuple[float, float]] = {
    Direction.LEFT: (-1.0, 0.0),
    Direction.RIGHT: (1.0, 0.0),
    Direction.UP: (0.0, -1.0),
    Direction.DOWN: (0.0, 1.0),
    Direction.UP_LEFT: (-0.7071067811865476, -0.7071067811865476),
    Direction.UP_RIGHT: (0.7071067811865476, -0.7071067811865476),
    Direction.DOWN_LEFT: (-0.7071067811865476, 0.7071067811865476),
    Direction.DOWN_RIGHT: (0.7071067811865476, 0.7071067811865476),
}


class Speed(StrEnum):
    SLOW = "slow"
    FAST = "fast"


SPEED_UNITS_PER_S: dict[Speed, float] = {Speed.SLOW: 0.075, Speed.FAST: 0.16}


class Camera(StrEnum):
    STATIC = "static"
    PAN_LEFT = "pan left"
    PAN_RIGHT = "pan right"
    PAN_UP = "pan up"
    PAN_DOWN = "pan down"
    ZOOM_IN = "zoom in"
    ZOOM_OUT = "zoom out"


# Camera motion: pans move the view center at this speed (world units / s); zooms multiply the
# magnification by ZOOM_RATE every second (zoom out divides), so a 4 s clip zooms by about 1.5×.
PAN_UNITS_PER_S = 0.09
ZOOM_RATE_PER_S = 1.11
PAN_DIRECTION: dict[Camera, tuple[float, float]] = {
    Camera.PAN_LEFT: (-1.0, 0.0),
    Camera.PAN_RIGHT: (1.0, 0.0),
    Camera.PAN_UP: (0.0, -1.0),
    Camera.PAN_DOWN: (0.0, 1.0),
}

GRAVITY = 2.2  # world units / s², downwards
RESTITUTION = 0.78  # fraction of speed kept at each bounce on the floor
FLOOR_HEIGHT = 0.12  # the floor band at the bottom of the frame-0 view, world units
TRAIL_WIDTH = 0.035  # paint-trail stroke width, world units


@dataclass
class ObjectSpec:
    """One object: what it looks like, where it starts (world units) and how it moves."""

    shape: Shape
    color: Color
    size: Size
    x: float  # center at t=0
    y: float
    motion: Motion = Motion.STATIC
    direction: Direction | None = None  # LINEAR and COLLIDE (left/right) only
    speed: Speed | None = None  # LINEAR and COLLIDE only
    height: float = 0.0  # FALL only: drop height above the floor contact point, world units
    trail: bool = False  # leaves a lasting paint trail in its own color

    @property
    def radius(self) -> float:
        return SIZE_RADIUS[self.size]


@dataclass
class Occluder:
    """A vertical pillar, drawn in front of the objects, that moving objects pass behind."""

    x: float  # center, world units
    width: float
    tone: Tone


@dataclass
class Background:
    tone: Tone
    pattern: Pattern = Pattern.PLAIN
    accent: Tone | None = None  # the pattern's second tone (None for PLAIN)
    cell: float = 0.125  # pattern period / 2, world units

    def __post_init__(self) -> None:
        if self.pattern is not Pattern.PLAIN and self.accent is None:
            raise ValueError(f"pattern {self.pattern.value!r} needs an accent tone, got None")


@dataclass
class SceneSpec:
    """Everything one clip shows. `width`/`height`/`num_frames`/`fps` are its native rendering."""

    objects: list[ObjectSpec]
    background: Background
    camera: Camera = Camera.STATIC
    occluder: Occluder | None = None
    floor: Floor | None = None  # a floor band (present when something falls): a tone or a color
    width: int = 64
    height: int = 64
    num_frames: int = 33
    fps: float = 8.0
    extras: dict[str, Any] = field(default_factory=dict)  # free-form provenance (seed, split, …)

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= 3:
            raise ValueError(f"a scene has 1 to 3 objects, got {len(self.objects)}")
        colors = [o.color for o in self.objects]
        if len(set(colors)) != len(colors):
            raise ValueError(f"object colors must be distinct within a scene, got {colors}")
        if isinstance(self.floor, Color) and self.floor in colors:
            raise ValueError(
                f"a colored floor must differ from every object's color: the floor and an "
                f"object are both {self.floor.value}"
            )
        if self.width < 8 or self.height < 8:
            raise ValueError(f"width and height must be >= 8, got {self.width}x{self.height}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the last."""
        return (self.num_frames - 1) / self.fps

    @property
    def view_size(self) -> tuple[float, float]:
        """(width, height) of the frame-0 view in world units; the shorter side is 1."""
        unit = min(self.width, self.height)
        return self.width / unit, self.height / unit

    @property
    def floor_y(self) -> float:
        return self.view_size[1] - FLOOR_HEIGHT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSpec:
        """Inverse of `to_dict`; raises ValueError naming a bad field or value."""
        try:
            objects = [_object_from_dict(o) for o in data["objects"]]
            bg = data["background"]
            background = Background(
                tone=Tone(bg["tone"]),
                pattern=Pattern(bg.get("pattern", "plain")),
                accent=Tone(bg["accent"]) if bg.get("accent") else None,
                cell=float(bg.get("cell", 0.125)),
            )
            occ = data.get("occluder")
            occluder = (
                Occluder(x=float(occ["x"]), width=float(occ["width"]), tone=Tone(occ["tone"]))
                if occ
                else None
            )
            return cls(
                objects=objects,
                background=background,
                camera=Camera(data.get("camera", "static")),
                occluder=occluder,
                floor=floor_from_value(data["floor"]) if data.get("floor") else None,
                width=int(data.get("width", 64)),
                height=int(data.get("height", 64)),
                num_frames=int(data.get("num_frames", 33)),
                fps=float(data.get("fps", 8.0)),
                extras=dict(data.get("extras", {})),
            )
        except KeyError as e:
            raise ValueError(f"scene spec is missing field {e.args[0]!r}") from e
        except (TypeError, AttributeError) as e:
            raise ValueError(f"scene spec is malformed: {e}; see SceneSpec.to_dict()") from e


def _object_from_dict(data: dict[str, Any]) -> ObjectSpec:
    return ObjectSpec(
        shape=Shape(data["shape"]),
        color=Color(data["color"]),
        size=Size(data["size"]),
        x=float(data["x"]),
        y=float(data["y"]),
        motion=Motion(data.get("motion", "static")),
        direction=Direction(data["direction"]) if data.get("direction") else None,
        speed=Speed(data["speed"]) if data.get("speed") else None,
        height=float(data.get("height", 0.0)),
        trail=bool(data.get("trail", False)),
    )
