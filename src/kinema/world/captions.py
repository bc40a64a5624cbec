"""Text for world scenes: short user-style prompts and detailed re-captions, as Sora trains on both.

Every phrase is drawn from the synonym tables and templates below with a `numpy.random.Generator`,
so a model sees varied language for one scene; the same spec and rng state give the same text.
Object colors are always the literal `Color` values (never a synonym), so text can be matched back
to a spec; background and pillar tones are `Tone` values, which no color word overlaps. A floor is
a tone or a color; a colored floor is named in the short prompt too ("bounces on a blue floor").
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from kinema.world.spec import (
    Camera,
    Color,
    Direction,
    Motion,
    ObjectSpec,
    Pattern,
    SceneSpec,
    Shape,
    Size,
    Speed,
)

SHAPE_WORDS: dict[Shape, list[str]] = {
    Shape.CIRCLE: ["circle", "ball", "disc", "round shape"],
    Shape.SQUARE: ["square", "box", "block"],
    Shape.TRIANGLE: ["triangle", "wedge", "triangular shape"],
}
SIZE_WORDS: dict[Size, list[str]] = {Size.SMALL: ["small", "little"], Size.LARGE: ["large", "big"]}
SPEED_WORDS: dict[Speed, list[str]] = {
    Speed.SLOW: ["slowly", "gently", "leisurely", "at a slow pace"],
    Speed.FAST: ["quickly", "fast", "rapidly", "swiftly", "at a fast pace"],
}
DIRECTION_WORDS: dict[Direction, list[str]] = {
    Direction.LEFT: ["left", "to the left", "leftward"],
    Direction.RIGHT: ["right", "to the right", "rightward"],
    Direction.UP: ["up", "upward", "toward the top"],
    Direction.DOWN: ["down", "downward", "toward the bottom"],
    Direction.UP_LEFT: ["up and to the left", "diagonally up-left", "toward the top left"],
    Direction.UP_RIGHT: ["up and to the right", "diagonally up-right", "toward the top right"],
    Direction.DOWN_LEFT: ["down and to the left", "diagonally down-left", "toward the bottom left"],
    Direction.DOWN_RIGHT: ["down and to the right", "diagonally down-right", "to the bottom right"],
}
# Verb phrases in the third person singular. LINEAR lists bare verbs (a direction follows);
# COLLIDE lists plural phrases whose subject is the colliding pair.
MOTION_WORDS: dict[Motion, list[str]] = {
    Motion.STATIC: ["sits still", "stays still", "rests in place", "does not move", "stays put"],
    Motion.LINEAR: ["moves", "slides", "glides", "drifts", "travels"],
    Motion.FALL: ["falls and bounces", "drops and bounces", "falls to the floor and bounces"],
    Motion.COLLIDE: ["collide and bounce apart", "bump into each other and bounce apart"],
}
# Full clauses ("the camera pans left") and short trailing tags ("panning left", "static shot").
CAMERA_CLAUSES: dict[Camera, list[str]] = {
    Camera.STATIC: ["the camera is still", "the camera does not move", "the shot is locked off"],
    Camera.PAN_LEFT: ["the camera pans left", "the view slides to the left"],
    Camera.PAN_RIGHT: ["the camera pans right", "the view slides to the right"],
    Camera.PAN_UP: ["the camera pans up", "the camera tilts upward", "the view slides upward"],
    Camera.PAN_DOWN: ["the camera pans down", "the camera tilts downward", "the view slides down"],
    Camera.ZOOM_IN: ["the camera zooms in", "the camera pushes in", "the view closes in"],
    Camera.ZOOM_OUT: ["the camera zooms out", "the camera pulls back", "the view widens out"],
}
CAMERA_TAGS: dict[Camera, list[str]] = {
    Camera.STATIC: ["static shot", "still camera", "locked-off camera"],
    Camera.PAN_LEFT: ["panning left", "camera panning left", "the camera panning to the left"],
    Camera.PAN_RIGHT: ["panning right", "camera panning right", "the camera panning to the right"],
    Camera.PAN_UP: ["panning up", "camera tilting up", "the camera panning upward"],
    Camera.PAN_DOWN: ["panning down", "camera tilting down", "the camera panning downward"],
    Camera.ZOOM_IN: ["zooming in", "camera pushing in", "the camera zooming in"],
    Camera.ZOOM_OUT: ["zooming out", "camera pulling back", "the camera zooming out"],
}
# How a moving camera's clause leads into still objects: "the camera zooms in on a red ball".
CAMERA_PREPOSITIONS: dict[Camera, str] = {
    Camera.PAN_LEFT: "over",
    Camera.PAN_RIGHT: "over",
    Camera.PAN_UP: "over",
    Camera.PAN_DOWN: "over",
    Camera.ZOOM_IN: "on",
    Camera.ZOOM_OUT: "from",
}
BACKGROUND_WORDS: dict[Pattern, list[str]] = {
    Pattern.PLAIN: [
        "a plain {tone} background",
        "a solid {tone} background",
        "a flat {tone} backdrop",
    ],
    Pattern.CHECKERED: [
        "a {tone} and {accent} checkered background",
        "a {tone} background checkered with {accent}",
        "a {tone} and {accent} checkerboard backdrop",
    ],
    Pattern.DOTTED: [
        "a {tone} background dotted with {accent}",
        "a {tone} background with {accent} dots",
        "a {tone} backdrop covered in {accent} polka dots",
    ],
    Pattern.GRID: [
        "a {tone} background with a {accent} grid",
        "a {tone} background ruled with {accent} grid lines",
        "a {accent} grid over a {tone} background",
    ],
}
PILLAR_WORDS = ["pillar", "column"]
COUNT_WORDS: dict[int, list[str]] = {1: ["one", "a single"], 2: ["two"], 3: ["three"]}
# Templates. Prompt ones wrap a verb phrase {vp}; detailed ones are whole sentences, unpunctuated.
TRAIL_PROMPT = [
    "paints a line as it {vp}",
    "{vp}, leaving a trail",
    "{vp}, painting a {color} line",
]
TRAIL_DETAILED = [", leaving a lasting {color} trail", ", painting a {color} trail behind it"]
OCCLUDE_PROMPT = ["{vp} behind a {tone} {pillar}", "{vp}, passing behind a {tone} {pillar}"]
OCCLUDE_DETAILED = [
    "it passes behind a {tone} {pillar} and comes out the other side",
    "on the way it slips behind a {tone} {pillar}, vanishes, and reappears on the other side",
    "a {tone} {pillar} stands in its path; the {shape} goes behind it and comes out the other side",
]
PAIR_DETAILED = ["{a} and {b}; they {verb}", "{a} while {b}, until the two {verb}"]
INTRO = ["{count} {noun} on {bg}", "the scene shows {count} {noun} against {bg}"]
FLOOR = ["a {tone} floor runs along the bottom", "there is a {tone} floor at the bottom"]
# A falling object's verb phrase when its floor is colored (tone floors go unsaid in prompts).
FALL_ON_FLOOR = [
    "bounces on a {floor} floor",
    "falls and bounces on a {floor} floor",
    "drops and bounces on a {floor} floor",
]


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _fix_articles(text: str) -> str:
    """Templates always write "a"; make it "an" before a vowel ("an orange ball")."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def _join(parts: list[str], rng: np.random.Generator) -> str:
    """ "x", "x and y" / "x while y", "x, y, and z" / "x, y and z"."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0] + _pick(rng, [" and ", " while "]) + parts[1]
    return ", ".join(parts[:-1]) + _pick(rng, [", and ", " and "]) + parts[-1]


def _noun_phrase(obj: ObjectSpec, rng: np.random.Generator, size: bool) -> str:
    """ "a [small] red ball"."""
    words = [_pick(rng, SIZE_WORDS[obj.size])] if size else []
    return " ".join(["a", *words, obj.color.value, _pick(rng, SHAPE_WORDS[obj.shape])])


def _verb_phrase(obj: ObjectSpec, rng: np.random.Generator, speed: bool) -> str:
    """What one object does ("slides quickly to the left"), without trail or occluder."""
    if obj.motion not in (Motion.LINEAR, Motion.COLLIDE):
        return _pick(rng, MOTION_WORDS[obj.motion])
    verb = _pick(rng, MOTION_WORDS[Motion.LINEAR])
    way = _pick(rng, DIRECTION_WORDS[obj.direction]) if obj.direction else "along"
    if not speed or obj.speed is None:
        return f"{verb} {way}"
    pace = _pick(rng, SPEED_WORDS[obj.speed])
    return f"{verb} {pace} {way}" if rng.random() < 0.5 else f"{verb} {way} {pace}"


def _colliders(spec: SceneSpec) -> list[int]:
    """Indices of the colliding pair, or [] when there is none."""
    idx = [i for i, o in enumerate(spec.objects) if o.motion is Motion.COLLIDE]
    return idx if len(idx) == 2 else []


def _prompt_clause(spec: SceneSpec, i: int, rng: np.random.Generator) -> str:
    """ "a green triangle slides left behind a gray pillar"."""
    obj = spec.objects[i]
    vp = _verb_phrase(obj, rng, speed=rng.random() < 0.3)
    falling = [k for k, o in enumerate(spec.objects) if o.motion is Motion.FALL]
    if isinstance(spec.floor, Color) and falling[:1] == [i]:  # said once, by the first faller
        vp = _pick(rng, FALL_ON_FLOOR).format(floor=spec.floor.value)
    if spec.occluder is not None and i == 0:  # the sampler's occluded mover is the first object
        tone, pillar = spec.occluder.tone.value, _pick(rng, PILLAR_WORDS)
        vp = _pick(rng, OCCLUDE_PROMPT).format(vp=vp, tone=tone, pillar=pillar)
    if obj.trail:
        vp = _pick(rng, TRAIL_PROMPT).format(vp=vp, color=obj.color.value)
    return f"{_noun_phrase(obj, rng, size=rng.random() < 0.25)} {vp}"


def short_prompt(spec: SceneSpec, rng: np.random.Generator) -> str:
    """A short lowercase prompt as a user would type it: every object's color and shape, how the
    moving ones move, and the camera when it moves (e.g. "an orange ball falls and bounces")."""
    still = all(o.motion is Motion.STATIC for o in spec.objects)
    pair, clauses = _colliders(spec), []
    for i, obj in enumerate(spec.objects):
        if still:  # name the objects, not their stillness
            clauses.append(_noun_phrase(obj, rng, size=rng.random() < 0.25))
        elif pair and i == pair[0]:
            a, b = (_noun_phrase(spec.objects[j], rng, size=False) for j in pair)
            template = _pick(rng, ["{a} and {b} {verb}", "two shapes, {a} and {b}, {verb}"])
            clauses.append(template.format(a=a, b=b, verb=_pick(rng, MOTION_WORDS[Motion.COLLIDE])))
        elif i not in pair:
            clauses.append(_prompt_clause(spec, i, rng))
    clause, tag = _pick(rng, CAMERA_CLAUSES[spec.camera]), _pick(rng, CAMERA_TAGS[spec.camera])
    if spec.camera is Camera.STATIC:
        templates = ["{scene}", "{scene}", "{scene}, {tag}"]
    elif still:
        templates = ["{scene}, {tag}", "{clause} {prep} {scene}"]
    else:
        templates = ["{scene}, {tag}", "{scene} as {clause}", "{clause} while {scene}"]
    prep = CAMERA_PREPOSITIONS.get(spec.camera, "")
    text = _pick(rng, templates).format(
        scene=_join(clauses, rng), clause=clause, tag=tag, prep=prep
    )
    return _fix_articles(text)


def _object_sentence(obj: ObjectSpec, rng: np.random.Generator) -> str:
    """ "a small red ball glides quickly to the left, leaving a lasting red trail"."""
    trail = _pick(rng, TRAIL_DETAILED).format(color=obj.color.value) if obj.trail else ""
    return f"{_noun_phrase(obj, rng, size=True)} {_verb_phrase(obj, rng, speed=True)}{trail}"


def _pair_sentence(a: ObjectSpec, b: ObjectSpec, rng: np.random.Generator) -> str:
    """Two objects that head toward each other, collide and bounce apart."""
    a_text, b_text = _object_sentence(a, rng), _object_sentence(b, rng)
    verb = _pick(rng, MOTION_WORDS[Motion.COLLIDE])
    return _pick(rng, PAIR_DETAILED).format(a=a_text, b=b_text, verb=verb)


def _occluder_sentence(spec: SceneSpec, rng: np.random.Generator) -> str:
    """The first object passing behind the pillar and coming out the other side."""
    assert spec.occluder is not None
    shape = _pick(rng, SHAPE_WORDS[spec.objects[0].shape])
    return _pick(rng, OCCLUDE_DETAILED).format(
        tone=spec.occluder.tone.value, pillar=_pick(rng, PILLAR_WORDS), shape=shape
    )


def _intro(spec: SceneSpec, rng: np.random.Generator) -> str:
    """How many objects there are, and the background."""
    n, bg = len(spec.objects), spec.background
    noun = _pick(rng, ["shape", "object"]) + ("s" if n > 1 else "")
    accent = bg.accent.value if bg.accent else ""
    background = _pick(rng, BACKGROUND_WORDS[bg.pattern]).format(tone=bg.tone.value, accent=accent)
    return _pick(rng, INTRO).format(count=_pick(rng, COUNT_WORDS[n]), noun=noun, bg=background)


def detailed_caption(spec: SceneSpec, rng: np.random.Generator) -> str:
    """A few sentences naming every attribute: the object count, background, floor, each object's
    size, color, shape, motion, direction, speed and trail, the occluder and the camera."""
    pair, objects = _colliders(spec), []
    for i, obj in enumerate(spec.objects):
        if pair and i == pair[0]:
            objects.append(_pair_sentence(spec.objects[pair[0]], spec.objects[pair[1]], rng))
        elif i not in pair:
            objects.append(_object_sentence(obj, rng))
        if spec.occluder is not None and i == 0:
            objects.append(_occluder_sentence(spec, rng))
    floor = [_pick(rng, FLOOR).format(tone=spec.floor.value)] if spec.floor is not None else []
    camera = _pick(rng, CAMERA_CLAUSES[spec.camera]) + _pick(rng, ["", "", " throughout the clip"])
    intro = _intro(spec, rng)
    orders = [
        [intro, *floor, *objects, camera],
        [intro, camera, *floor, *objects],
        [camera, intro, *floor, *objects],
    ]
    sentences = orders[int(rng.integers(len(orders)))]
    return _fix_articles(" ".join(s[0].upper() + s[1:] + "." for s in sentences))


def caption_vocabulary() -> dict[str, list[str]]:
    """The synonym tables, flattened to "table.key" -> phrases (e.g. "shape.circle": [...])."""
    tables: dict[str, dict] = {
        "shape": SHAPE_WORDS,
        "size": SIZE_WORDS,
        "speed": SPEED_WORDS,
        "direction": DIRECTION_WORDS,
        "motion": MOTION_WORDS,
        "camera": CAMERA_CLAUSES,
        "camera_tag": CAMERA_TAGS,
        "background": BACKGROUND_WORDS,
    }
    vocab = {
        f"{t}.{k.value}": list(words) for t, table in tables.items() for k, words in table.items()
    }
    vocab.update(pillar=list(PILLAR_WORDS), trail=TRAIL_PROMPT + TRAIL_DETAILED)
    vocab.update(occluder=list(OCCLUDE_PROMPT + OCCLUDE_DETAILED))
    return vocab


OPPOSITE_DIRECTION: dict[Direction, Direction] = {
    Direction.LEFT: Direction.RIGHT,
    Direction.UP: Direction.DOWN,
    Direction.UP_LEFT: Direction.DOWN_RIGHT,
    Direction.UP_RIGHT: Direction.DOWN_LEFT,
}
OPPOSITE_DIRECTION |= {b: a for a, b in OPPOSITE_DIRECTION.items()}
OPPOSITE_CAMERA: dict[Camera, Camera] = {
    Camera.PAN_LEFT: Camera.PAN_RIGHT,
    Camera.PAN_UP: Camera.PAN_DOWN,
    Camera.ZOOM_IN: Camera.ZOOM_OUT,
}
OPPOSITE_CAMERA |= {b: a for a, b in OPPOSITE_CAMERA.items()}


def reversed_scene(spec: SceneSpec) -> SceneSpec:
    """``spec`` with every object's direction and the camera's move turned round (starts kept):
    the scene whose world text ``reverse_world_directions`` writes."""
    objects = [
        dataclasses.replace(o, direction=OPPOSITE_DIRECTION[o.direction]) if o.direction else o
        for o in spec.objects
    ]
    camera = OPPOSITE_CAMERA.get(spec.camera, spec.camera)
    return dataclasses.replace(spec, objects=objects, camera=camera)


def _mirrored_phrases() -> dict[str, str]:
    """Each direction phrase of the tables -> the phrase in the same place under the opposite
    direction ("the view slides upward" -> "the view slides down")."""
    mirrored: dict[str, str] = {}
    for table, opposite in (
        (DIRECTION_WORDS, OPPOSITE_DIRECTION),
        (CAMERA_CLAUSES, OPPOSITE_CAMERA),
        (CAMERA_TAGS, OPPOSITE_CAMERA),
    ):
        for key, phrases in table.items():
            if key in opposite:
                mirrored |= dict(zip(phrases, table[opposite[key]], strict=True))  # type: ignore[index]
    # a moving camera's clause leads into still objects with its own preposition:
    # "the camera zooms in on a ball" -> "the camera zooms out from a ball"
    for camera, clauses in CAMERA_CLAUSES.items():
        if camera in OPPOSITE_CAMERA:
            opposite = OPPOSITE_CAMERA[camera]
            prep, opposite_prep = CAMERA_PREPOSITIONS[camera], CAMERA_PREPOSITIONS[opposite]
            for clause, reverse in zip(clauses, CAMERA_CLAUSES[opposite], strict=True):
                mirrored[f"{clause} {prep}"] = f"{reverse} {opposite_prep}"
    return mirrored


_MIRRORED = _mirrored_phrases()
# Longest first, so "toward the top left" wins over "toward the top" at the same place.
_MIRROR_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(p) for p in sorted(_MIRRORED, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


def reverse_world_directions(text: str) -> str | None:
    """``text`` with every direction the world's tables can write reversed, in the world's own
    words: each phrase becomes the one in its place under the opposite direction ("the view slides
    upward" -> "the view slides down", "glides leftward" -> "glides rightward"; zooms in and out
    swap too). So a world caption's reverse reads like another world caption, where a word-for-word
    reversal can write phrases the world never does. None when the text names no direction."""

    def swap(match: re.Match[str]) -> str:
        found = match.group(0)
        new = _MIRRORED[found.lower()]
        return new[0].upper() + new[1:] if found[0].isupper() else new

    reversed_text, count = _MIRROR_PATTERN.subn(swap, text)
    return reversed_text if count else None
