"""Read a short prompt in the world's vocabulary into a partial scene: what the user said, and
nothing more. `kinema.language.expand` fills the rest and writes the detailed caption.

The parser is a handful of regular expressions built from the world's own word tables
(`kinema.world.captions`), so every short prompt the world writes is understood; other wording
that names the same things ("a big red sphere rolls to the right") is understood too. Words it
does not know are reported, never guessed at.

Reading order: camera phrases, background, floor, then object mentions ("a small red ball");
the text after a mention up to the next one says what that object does (its verb, direction,
speed, trail, the pillar it passes behind, a collision).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kinema.world.captions import (
    BACKGROUND_WORDS,
    CAMERA_CLAUSES,
    CAMERA_TAGS,
    DIRECTION_WORDS,
    SHAPE_WORDS,
    SPEED_WORDS,
)
from kinema.world.spec import (
    Camera,
    Color,
    Direction,
    Floor,
    Motion,
    Pattern,
    Shape,
    Size,
    Speed,
    Tone,
    floor_from_value,
)

__all__ = ["ObjectMention", "WorldPrompt", "parse_world_prompt"]


@dataclass
class ObjectMention:
    """One object as the prompt names it; None means "not said"."""

    color: Color | None = None
    shape: Shape | None = None
    size: Size | None = None
    motion: Motion | None = None
    direction: Direction | None = None
    speed: Speed | None = None
    trail: bool = False
    occluded: bool = False  # passes behind the pillar
    text: str = ""  # the mention as written, e.g. "a small red ball"


@dataclass
class WorldPrompt:
    """What a prompt says about a world scene."""

    objects: list[ObjectMention] = field(default_factory=list)
    camera: Camera | None = None
    background_tone: Tone | None = None
    background_pattern: Pattern | None = None
    background_accent: Tone | None = None
    floor: Floor | None = None  # a tone, or an object color ("a blue floor")
    pillar: Tone | None = None  # the pillar's tone, when the prompt names its tone
    has_pillar: bool = False
    unknown_words: list[str] = field(default_factory=list)  # words outside the vocabulary


def _alternation(words) -> str:
    """A regex alternation, longest first so "light gray" wins over "gray"."""
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


TONE = _alternation(t.value for t in Tone)
COLOR = _alternation(c.value for c in Color)
SIZE_OF_WORD = {"small": Size.SMALL, "little": Size.SMALL, "tiny": Size.SMALL}
SIZE_OF_WORD |= {"large": Size.LARGE, "big": Size.LARGE, "huge": Size.LARGE}
SHAPE_OF_WORD = {w: s for s, words in SHAPE_WORDS.items() for w in words}
SHAPE_OF_WORD |= {"disk": Shape.CIRCLE, "sphere": Shape.CIRCLE, "dot": Shape.CIRCLE}
SHAPE_OF_WORD |= {"cube": Shape.SQUARE, "pyramid": Shape.TRIANGLE}
SHAPE_OF_WORD |= {"shape": None, "object": None}  # a shape the prompt leaves open
OBJECT_RE = re.compile(
    rf"\b(?:(?P<size1>{_alternation(SIZE_OF_WORD)})\s+)?(?:(?P<color>{COLOR})\s+)?"
    rf"(?:(?P<size2>{_alternation(SIZE_OF_WORD)})\s+)?(?P<shape>{_alternation(SHAPE_OF_WORD)})\b"
)
ARTICLE_RE = re.compile(r"\b(?:an?|one|the|a single)\s+$")

# Camera: the world's own phrases first, then looser forms.
_CAMERA_PHRASES = sorted(
    ((p, cam) for table in (CAMERA_CLAUSES, CAMERA_TAGS) for cam, ps in table.items() for p in ps),
    key=lambda pc: len(pc[0]),
    reverse=True,
)
_PAN = {"left": Camera.PAN_LEFT, "right": Camera.PAN_RIGHT, "up": Camera.PAN_UP}
_PAN |= {"upward": Camera.PAN_UP, "down": Camera.PAN_DOWN, "downward": Camera.PAN_DOWN}
CAMERA_RES: list[tuple[re.Pattern, Camera | None]] = [
    (re.compile(rf"\b{re.escape(p)}\b"), cam) for p, cam in _CAMERA_PHRASES
]
CAMERA_RES += [
    (
        re.compile(
            r"\b(?:the )?(?:camera |view )?(?:pans?|panning|tilts?|tilting) "
            r"(?:to the )?(?P<pan>left|right|upward|up|downward|down)\b"
        ),
        None,
    ),
    (re.compile(r"\b(?:the )?(?:camera )?(?:zooms?|zooming|push(?:es|ing)?) in\b"), Camera.ZOOM_IN),
    (
        re.compile(
            r"\b(?:the )?(?:camera )?(?:zooms? out|zooming out|pull(?:s|ing)? (?:back|out))\b"
        ),
        Camera.ZOOM_OUT,
    ),
    (re.compile(r"\b(?:static|still|fixed|locked(?:-| )off) (?:camera|shot)\b"), Camera.STATIC),
]

# Background: the world's templates as regexes, then looser forms.
_PATTERN_WORDS = {"checkered": Pattern.CHECKERED, "checkerboard": Pattern.CHECKERED}
_PATTERN_WORDS |= {"dotted": Pattern.DOTTED, "polka dot": Pattern.DOTTED, "grid": Pattern.GRID}
_PATTERN_WORDS |= {"plain": Pattern.PLAIN, "solid": Pattern.PLAIN, "flat": Pattern.PLAIN}


def _template_re(template: str) -> re.Pattern:
    text = re.escape(template.removeprefix("a "))
    text = text.replace(re.escape("{tone}"), rf"(?P<tone>{TONE})")
    text = text.replace(re.escape("{accent}"), rf"(?P<accent>{TONE})")
    return re.compile(rf"\b{text}\b")


BACKGROUND_RES: list[tuple[re.Pattern, Pattern | None]] = [
    (_template_re(t), pattern) for pattern, ts in BACKGROUND_WORDS.items() for t in ts
]
BACKGROUND_RES.sort(key=lambda rp: len(rp[0].pattern), reverse=True)
BACKGROUND_RES += [
    (
        re.compile(
            rf"\b(?:(?P<tone>{TONE}) )?(?:and (?P<accent>{TONE}) )?"
            rf"(?P<pattern>{_alternation(_PATTERN_WORDS)}) (?:background|backdrop)\b"
        ),
        None,
    ),
    (re.compile(rf"\b(?:(?P<tone>{TONE}) )?(?:background|backdrop)\b"), None),
]
FLOOR_RE = re.compile(rf"\b(?:(?P<tone>{TONE}) |(?P<color>{COLOR}) )?(?:floor|ground)\b")
PILLAR_RE = re.compile(
    rf"\b(?:passing |slipping |going )?(?:behind|past) (?:an? |the )?(?:(?P<tone>{TONE}) )?"
    r"(?:pillar|column|wall|post)\b"
)

# What an object does, read in the text after its mention.
COLLIDE_RE = re.compile(
    r"\b(?:collid\w*|bump(?:s|ing)? into(?: each other)?|crash\w*(?: into)?|hit each other)"
    r"(?: and bounce(?:s)? (?:apart|off))?(?: (?:each other|one another))?\b"
)
FALL_RE = re.compile(
    r"\b(?:fall(?:s|ing)?|drop(?:s|ping)?)(?: to the floor)?(?: and bounc\w*)?\b"
    r"|\bbounc(?:es|ing|e)\b"
)
STATIC_RE = re.compile(
    r"\b(?:sits? still|stays? still|rests?(?: in place)?|does not move|doesn't move|stays? put"
    r"|motionless|stationary|stands? still|sits?|stays?)\b"
)
LINEAR_RE = re.compile(
    r"\b(?:mov(?:es?|ing)|slid(?:es?|ing)|glid(?:es?|ing)|drift(?:s|ing)?|travel(?:s|ing|ling)?"
    r"|roll(?:s|ing)?|fl(?:y|ies|ying)|go(?:es|ing)?|head(?:s|ing)?)\b"
)
_DIRECTION_PHRASES = {p: d for d, ps in DIRECTION_WORDS.items() for p in ps}
_DIRECTION_PHRASES |= {d.value: d for d in Direction}  # "up-left"
_DIRECTION_PHRASES |= {"upwards": Direction.UP, "downwards": Direction.DOWN}
DIRECTION_RE = re.compile(rf"\b(?:{_alternation(_DIRECTION_PHRASES)})\b")
_SPEED_PHRASES = {p: s for s, ps in SPEED_WORDS.items() for p in ps}
_SPEED_PHRASES |= {"slow": Speed.SLOW, "quick": Speed.FAST}
SPEED_RE = re.compile(rf"\b(?:{_alternation(_SPEED_PHRASES)})\b")
TRAIL_RE = re.compile(
    rf"\b(?:paints? an? (?:(?:{COLOR}) )?line|painting an? (?:(?:{COLOR}) )?line"
    rf"|leav(?:es|ing) an? (?:lasting )?(?:(?:{COLOR}) )?(?:trail|line|streak)"
    r"|with a trail|trail\w*)\b"
)

# Words that carry no scene content of their own.
_FUNCTION_TEXT = """
    a an the and or as while it its it's is are on in of with to over from into onto at by
    then until they them their each other apart off two three one single shape shapes object
    objects thing things scene shows showing there this that which who clip video frame
    camera view shot around along across through toward towards against side way other
    before after so just very"""
FUNCTION_WORDS = frozenset(_FUNCTION_TEXT.split())


class _Text:
    """The prompt with a mask of the characters already read."""

    def __init__(self, prompt: str) -> None:
        text = prompt.lower().replace("grey", "gray").replace("colour", "color")
        # letters of any script stay inside their word (so "café" is reported whole); everything
        # else but apostrophes and hyphens (punctuation, emoji, "_") separates words
        text = re.sub(r"(?:[^\w'\- ]|_)+", " ", text)
        self.text = re.sub(r"\btowards\b", "toward", text)
        self.used = [False] * len(self.text)

    def masked(self, start: int = 0, end: int | None = None) -> str:
        end = len(self.text) if end is None else end
        pairs = zip(self.text[start:end], self.used[start:end], strict=True)
        return "".join(" " if used else c for c, used in pairs)

    def take(self, pattern: re.Pattern, start: int = 0, end: int | None = None):
        """The first match in the unread text of [start, end), marked read; None if none."""
        match = pattern.search(self.masked(start, end))
        if match is None:
            return None
        for i in range(start + match.start(), start + match.end()):
            self.used[i] = True
        return match

    def unread_words(self) -> list[str]:
        return [w.strip("'-") for w in self.masked().split() if w.strip("'-")]


def _read_camera(text: _Text) -> Camera | None:
    for pattern, camera in CAMERA_RES:
        match = text.take(pattern)
        if match is not None:
            return camera if camera is not None else _PAN[match.group("pan")]
    return None


def _read_background(text: _Text, prompt: WorldPrompt) -> None:
    for pattern, known in BACKGROUND_RES:
        match = text.take(pattern)
        if match is None:
            continue
        groups = match.groupdict()
        if groups.get("tone"):
            prompt.background_tone = Tone(groups["tone"])
        if groups.get("accent"):
            prompt.background_accent = Tone(groups["accent"])
        if known is not None:
            prompt.background_pattern = known
        elif groups.get("pattern"):
            prompt.background_pattern = _PATTERN_WORDS[groups["pattern"]]
        return


def _read_objects(text: _Text) -> list[tuple[ObjectMention, int, int]]:
    """Object mentions with the character span each one's own words cover."""
    found = []
    for match in OBJECT_RE.finditer(text.masked()):
        generic = SHAPE_OF_WORD[match.group("shape")] is None and match.group("color") is None
        if generic and ARTICLE_RE.search(text.text[: match.start()]) is None:
            continue  # "two shapes, ...": a count, not an object
        size = match.group("size1") or match.group("size2")
        mention = ObjectMention(
            color=Color(match.group("color")) if match.group("color") else None,
            shape=SHAPE_OF_WORD[match.group("shape")],
            size=SIZE_OF_WORD[size] if size else None,
            text=match.group(0),
        )
        for i in range(match.start(), match.end()):
            text.used[i] = True
        found.append((mention, match.start(), match.end()))
    return found


def _read_action(text: _Text, obj: ObjectMention, start: int, end: int) -> bool:
    """Fill `obj` from the text in [start, end); True when that text speaks of a collision."""
    collides = text.take(COLLIDE_RE, start, end) is not None
    if text.take(TRAIL_RE, start, end) is not None:
        obj.trail = True
    if text.take(PILLAR_RE, start, end) is not None:
        obj.occluded = True
    if not collides:
        if text.take(FALL_RE, start, end) is not None:
            obj.motion = Motion.FALL
        elif text.take(STATIC_RE, start, end) is not None:  # before "move": "does not move"
            obj.motion = Motion.STATIC
        elif text.take(LINEAR_RE, start, end) is not None:
            obj.motion = Motion.LINEAR
    direction = text.take(DIRECTION_RE, start, end)
    if direction is not None:
        obj.direction = _DIRECTION_PHRASES[direction.group(0)]
        if obj.motion is None and not collides:
            obj.motion = Motion.LINEAR  # "a red ball to the left" moves left
    speed = text.take(SPEED_RE, start, end)
    if speed is not None:
        obj.speed = _SPEED_PHRASES[speed.group(0)]
        if obj.motion is None and not collides:
            obj.motion = Motion.LINEAR
    return collides


def _pair_colliders(objects: list[ObjectMention], said_at: list[int]) -> None:
    """The text after mention k speaks of a collision: pair k with the mention before it when that
    one does nothing of its own ("a red ball and a blue box collide"), else with the next one
    ("a red ball crashes into a blue box")."""
    for k in said_at:
        if k > 0 and objects[k - 1].motion is None:
            pair = (k - 1, k)
        elif k + 1 < len(objects):
            pair = (k, k + 1)
        else:
            continue
        for i in pair:
            objects[i].motion = Motion.COLLIDE


def parse_world_prompt(prompt: str) -> WorldPrompt:
    """What `prompt` says about a world scene (see the module docstring)."""
    text, result = _Text(prompt), WorldPrompt()
    result.camera = _read_camera(text)
    _read_background(text, result)
    pillar = text.take(PILLAR_RE)  # read below, per object; peek at its tone here
    if pillar is not None:
        for i in range(pillar.start(), pillar.end()):
            text.used[i] = False
        result.has_pillar = True
        result.pillar = Tone(pillar.group("tone")) if pillar.group("tone") else None
    mentions = _read_objects(text)
    collisions = []
    for k, (obj, _, end) in enumerate(mentions):
        stop = mentions[k + 1][1] if k + 1 < len(mentions) else len(text.text)
        if _read_action(text, obj, end, stop):
            collisions.append(k)
    result.objects = [m for m, _, _ in mentions]
    _pair_colliders(result.objects, collisions)
    floor = text.take(FLOOR_RE)
    if floor is not None and (floor.group("tone") or floor.group("color")):
        result.floor = floor_from_value(floor.group("tone") or floor.group("color"))
    if result.has_pillar and not any(o.occluded for o in result.objects) and result.objects:
        result.objects[0].occluded = True  # "behind a pillar, a red ball moves left"
    result.unknown_words = [w for w in text.unread_words() if w not in FUNCTION_WORDS]
    return result
