"""Prompt expansion: a short prompt in, a detailed caption like the ones the model trained on out.

Sora's report expands short user prompts with a language model into the detailed captions its
training videos were re-captioned with. Kinema has two backends behind one protocol:

* `WorldExpander` (default, offline): reads the prompt with `parse_world_prompt`, fills what the
  prompt leaves open (sizes, colors, background, speeds, camera...) with draws from a seeded
  generator, and writes the caption with the world's own `detailed_caption`. Same prompt and
  seed, same caption. A prompt it cannot read as a world scene is passed through unchanged,
  with a warning that says why.
* `LLMExpander`: any OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp server), shown
  world examples of (short prompt, detailed caption). When the endpoint fails (timeout, refused,
  HTTP error, malformed reply) the original prompt is used and a warning says what happened.

`load_expander("world" | "llm" | "none", ...)` picks one; the studio, `kinema expand` and a
pipeline's ``expand_prompt`` option all go through it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import permutations
from typing import Protocol

import numpy as np

from kinema.language.openai_client import ChatClient, EndpointConfig, EndpointError
from kinema.language.world_parse import ObjectMention, WorldPrompt, parse_world_prompt
from kinema.world.captions import detailed_caption, short_prompt
from kinema.world.sampler import Scenario, is_valid, sample_scene
from kinema.world.spec import (
    FLOOR_HEIGHT,
    SIZE_RADIUS,
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

__all__ = [
    "Expander",
    "ExpanderKind",
    "Expansion",
    "LLMExpander",
    "PassThroughExpander",
    "WorldExpander",
    "layout_scene",
    "load_expander",
    "scene_from_prompt",
]

log = logging.getLogger(__name__)


class ExpanderKind(StrEnum):
    WORLD = "world"  # offline, the world's vocabulary
    LLM = "llm"  # an OpenAI-compatible chat endpoint
    NONE = "none"  # the prompt as typed


@dataclass(frozen=True)
class Expansion:
    prompt: str  # what to generate from: the expansion, or `original` when expansion failed
    original: str
    backend: ExpanderKind
    expanded: bool  # False when `prompt` is `original`
    warnings: tuple[str, ...] = ()


class Expander(Protocol):
    kind: ExpanderKind

    def expand(self, prompt: str, seed: int | None = None) -> Expansion: ...


# --- offline: the world's vocabulary -----------------------------------------------------------

# Where the nominal objects sit (world units). The caption does not mention positions; a spec is
# built so the world's own caption writer can describe it, and so callers can inspect it.
_FALL_HEIGHT = (0.3, 0.55)
_HORIZONTAL = (Direction.LEFT, Direction.RIGHT)


class SceneError(ValueError):
    """The prompt names something the world cannot show (e.g. two objects of one color)."""


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _fill_background(prompt: WorldPrompt, rng: np.random.Generator) -> Background:
    tones = list(Tone)
    tone = prompt.background_tone or _pick(rng, tones)
    pattern = prompt.background_pattern
    if pattern is None:
        pattern = Pattern.PLAIN if prompt.background_accent is None else Pattern.CHECKERED
    if pattern is Pattern.PLAIN:
        return Background(tone=tone)
    accent = prompt.background_accent
    if accent is None or accent is tone:
        i = tones.index(tone)
        accent = _pick(rng, [t for j, t in enumerate(tones) if abs(i - j) in (1, 2)])
    return Background(tone=tone, pattern=pattern, accent=accent)


def _fill_colors(
    objects: list[ObjectMention], floor: Floor | None, rng: np.random.Generator
) -> list[Color]:
    said = [o.color for o in objects if o.color is not None]
    repeated = sorted({c.value for c in said if said.count(c) > 1})
    if repeated:
        raise SceneError(
            f"two objects are both {' and '.join(repeated)}; each object in a world scene has "
            f"its own color ({', '.join(c.value for c in Color)})"
        )
    if floor in said:
        raise SceneError(
            f"the floor and an object are both {floor.value}; a colored floor needs a color no "
            "object has"
        )
    free = [c for c in Color if c not in said and c is not floor]
    free = [free[i] for i in rng.permutation(len(free))]
    return [o.color if o.color is not None else free.pop() for o in objects]


def _fill_object(
    mention: ObjectMention, color: Color, rng: np.random.Generator, x: float
) -> ObjectSpec:
    motion = mention.motion or (Motion.LINEAR if mention.occluded else Motion.STATIC)
    size = mention.size or _pick(rng, list(Size))
    obj = ObjectSpec(
        shape=mention.shape or _pick(rng, list(Shape)),
        color=color,
        size=size,
        x=x,
        y=0.5,
        motion=motion,
        trail=mention.trail,
    )
    if motion in (Motion.LINEAR, Motion.COLLIDE):
        ways = _HORIZONTAL if mention.occluded or motion is Motion.COLLIDE else list(Direction)
        obj.direction = mention.direction if mention.direction in ways else _pick(rng, ways)
        obj.speed = mention.speed or _pick(rng, list(Speed))
    if motion is Motion.FALL:
        obj.height = float(rng.uniform(*_FALL_HEIGHT))
        obj.y = 1.0 - FLOOR_HEIGHT - SIZE_RADIUS[size] - obj.height
    return obj


def _order(objects: list[ObjectMention]) -> list[ObjectMention]:
    """The occluded mover first (the world's captions speak of the pillar after object 0), and
    colliders heading toward each other: the first one listed moves right, the second left."""
    occluded = [o for o in objects if o.occluded][:1]
    rest = [o for o in objects if o not in occluded]
    ordered = occluded + rest
    pair = [o for o in ordered if o.motion is Motion.COLLIDE]
    if len(pair) == 2:
        pair[0].direction, pair[1].direction = Direction.RIGHT, Direction.LEFT
    elif len(pair) == 1:  # a collision needs two: the lone one just moves
        pair[0].motion = Motion.LINEAR
    return ordered


def _check_object_count(prompt: WorldPrompt) -> None:
    if not prompt.objects:
        raise SceneError("no object of the world (a colored circle, square or triangle) is named")
    if len(prompt.objects) > 3:
        n = len(prompt.objects)
        raise SceneError(f"a world scene has 1 to 3 objects, the prompt names {n}")


def scene_from_prompt(prompt: WorldPrompt, rng: np.random.Generator) -> SceneSpec:
    """A SceneSpec with everything `prompt` says and the rest drawn from `rng`. Positions are
    nominal (left to right); the spec describes a scene, it is not laid out for rendering."""
    _check_object_count(prompt)
    mentions = _order(prompt.objects)
    colors = _fill_colors(mentions, prompt.floor, rng)
    n = len(mentions)
    objects = [
        _fill_object(m, c, rng, x=(i + 1) / (n + 1))
        for i, (m, c) in enumerate(zip(mentions, colors, strict=True))
    ]
    background = _fill_background(prompt, rng)
    tones = list(Tone)
    bg = tones.index(background.tone)
    floor = None
    if any(o.motion is Motion.FALL for o in objects) or prompt.floor is not None:
        floor = prompt.floor or _pick(rng, [t for t in tones if t is not background.tone])
    occluder = None
    if prompt.has_pillar:
        tone = prompt.pillar or _pick(rng, [t for j, t in enumerate(tones) if abs(j - bg) >= 2])
        occluder = Occluder(x=0.5, width=2 * objects[0].radius + 0.12, tone=tone)
    return SceneSpec(
        objects=objects,
        background=background,
        camera=prompt.camera or Camera.STATIC,
        occluder=occluder,
        floor=floor,
    )


LAYOUT_TRIES = 3000  # scenes drawn by `layout_scene` before it gives up


def layout_scene(
    prompt: WorldPrompt,
    rng: np.random.Generator,
    width: int = 64,
    height: int = 64,
    num_frames: int = 33,
    fps: float = 8.0,
) -> SceneSpec:
    """A scene the renderer can draw with everything `prompt` says.

    `scene_from_prompt` only describes a scene (its positions are nominal). Here the world's own
    sampler draws scenes of the prompt's scenario and camera until one holds the objects asked
    for (count, motions, directions, speeds, sizes, trail, pillar); those are then painted in the
    prompt's colors and shapes, and the floor, background and pillar it names are set. The result
    passes `is_valid`: objects stay in view, never overlap, and an occlusion really happens.
    Raises SceneError when the world cannot show the prompt or no drawn scene fits.
    """
    _check_object_count(prompt)
    mentions = _order(prompt.objects)
    colors = _fill_colors(mentions, prompt.floor, rng)
    scenario = Scenario.FREE
    if any(m.occluded for m in mentions):
        scenario = Scenario.OCCLUDE
    elif any(m.motion is Motion.COLLIDE for m in mentions):
        scenario = Scenario.COLLIDE
    elif any(m.trail for m in mentions):
        scenario = Scenario.PAINT
    camera = prompt.camera or Camera.STATIC
    for _ in range(LAYOUT_TRIES):
        try:
            drawn = sample_scene(rng, width, height, num_frames, fps, scenario, camera)
        except RuntimeError as e:
            raise SceneError(str(e)) from None
        objects = _match_objects(drawn, mentions)
        if objects is None:
            continue
        painted = [
            replace(o, color=c, shape=m.shape or o.shape)
            for o, m, c in zip(objects, mentions, colors, strict=True)
        ]
        spec = _dress(drawn, painted, prompt, rng)
        if is_valid(spec):
            return spec
    raise SceneError(
        f"no {scenario.value} scene with camera {camera.value} at {width}x{height}, "
        f"{num_frames} frames holds these objects ({LAYOUT_TRIES} tries); fewer constraints "
        "(no size, speed or direction) or a longer clip fit more easily"
    )


def _match_objects(drawn: SceneSpec, mentions: list[ObjectMention]) -> list[ObjectSpec] | None:
    """The drawn objects in the order of the mentions they can stand for, or None. Object 0 of a
    scene with a pillar is the one that passes behind it."""
    if len(drawn.objects) != len(mentions):
        return None
    for perm in permutations(range(len(mentions))):
        behind = [k == 0 and drawn.occluder is not None for k in perm]
        chosen = [drawn.objects[k] for k in perm]
        if all(map(_fits, chosen, mentions, behind)):
            return chosen
    return None


def _fits(obj: ObjectSpec, mention: ObjectMention, behind_pillar: bool) -> bool:
    motion = mention.motion or (Motion.LINEAR if mention.occluded else Motion.STATIC)
    return (
        obj.motion is motion
        and mention.direction in (None, obj.direction)
        and mention.speed in (None, obj.speed)
        and mention.size in (None, obj.size)
        and mention.trail == obj.trail
        and mention.occluded == behind_pillar
    )


def _dress(
    drawn: SceneSpec, objects: list[ObjectSpec], prompt: WorldPrompt, rng: np.random.Generator
) -> SceneSpec:
    """The drawn scene with `objects`, and the background, floor and pillar tone the prompt
    names. What the prompt names is kept; a drawn part that clashes with it is redrawn (a drawn
    floor in a painted object's color or in the background's tone, a drawn background in the
    tone of the floor the prompt names)."""
    background = drawn.background
    if prompt.background_tone or prompt.background_pattern:
        background = _fill_background(prompt, rng)
    elif prompt.floor is not None and prompt.floor is background.tone:
        taken = {prompt.floor, background.accent}
        background = replace(background, tone=_pick(rng, [t for t in Tone if t not in taken]))
    floor = prompt.floor or drawn.floor
    if prompt.floor is None and floor is not None:
        colors = [o.color for o in objects]
        if floor in colors:
            floor = _pick(rng, [c for c in Color if c not in colors])
        elif floor is background.tone:
            floor = _pick(rng, [t for t in Tone if t is not background.tone])
    occluder = drawn.occluder
    if occluder is not None and prompt.pillar is not None:
        occluder = replace(occluder, tone=prompt.pillar)
    return replace(drawn, objects=objects, background=background, floor=floor, occluder=occluder)


@dataclass
class WorldExpander:
    """Offline expansion into the world's detailed-caption style; deterministic given a seed."""

    kind: ExpanderKind = field(default=ExpanderKind.WORLD, init=False)

    def expand(self, prompt: str, seed: int | None = None) -> Expansion:
        parsed = parse_world_prompt(prompt)
        rng = np.random.default_rng(seed)
        try:
            spec = scene_from_prompt(parsed, rng)
        except SceneError as e:
            warning = f"prompt left as typed: {e}"
            log.warning(warning)
            return Expansion(prompt, prompt, self.kind, expanded=False, warnings=(warning,))
        warnings = ()
        if parsed.unknown_words:
            words = ", ".join(dict.fromkeys(parsed.unknown_words))
            warnings = (f"not in the world's vocabulary, left out of the caption: {words}",)
        return Expansion(detailed_caption(spec, rng), prompt, self.kind, True, warnings)


# --- a language model behind an OpenAI-compatible endpoint -------------------------------------

SYSTEM_PROMPT = (
    "You expand short prompts for a text-to-video model into the detailed captions it was trained "
    "on. Keep everything the prompt says (objects, colors, shapes, sizes, motions, directions, "
    "speeds, camera). Fill in what it leaves open with plausible choices. Describe only what is "
    "visible, in 2 to 6 plain sentences, in the style of the examples. Answer with the caption "
    "only: no preamble, no quotes, no lists."
)
EXAMPLE_SEEDS = (7, 11, 23)  # world scenes shown to the model as examples of the caption style


def style_examples() -> list[tuple[str, str]]:
    """(short prompt, detailed caption) pairs from the world, the same on every call."""
    scenarios = (Scenario.FREE, Scenario.COLLIDE, Scenario.OCCLUDE)
    pairs = []
    for seed, scenario in zip(EXAMPLE_SEEDS, scenarios, strict=True):
        rng = np.random.default_rng(seed)
        spec = sample_scene(rng, 96, 64, scenario=scenario)
        pairs.append((short_prompt(spec, rng), detailed_caption(spec, rng)))
    return pairs


def _clean_reply(text: str) -> str:
    text = text.strip()
    for prefix in ("caption:", "detailed caption:", "expanded prompt:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


@dataclass
class LLMExpander:
    """Expansion by a chat model; on any endpoint failure the original prompt, with a warning."""

    config: EndpointConfig
    temperature: float = 0.7
    max_tokens: int = 300
    kind: ExpanderKind = field(default=ExpanderKind.LLM, init=False)

    def __post_init__(self) -> None:
        self.client = ChatClient(self.config)
        self._examples = style_examples()

    def messages(self, prompt: str) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        for short, caption in self._examples:
            messages += [
                {"role": "user", "content": short},
                {"role": "assistant", "content": caption},
            ]
        return [*messages, {"role": "user", "content": prompt}]

    def expand(self, prompt: str, seed: int | None = None) -> Expansion:
        try:
            reply = self.client.complete(
                self.messages(prompt),
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=seed,
            )
        except EndpointError as e:
            warning = f"prompt expansion failed, using the prompt as typed: {e}"
            log.warning(warning)
            return Expansion(prompt, prompt, self.kind, expanded=False, warnings=(warning,))
        text = _clean_reply(reply)
        if not text:
            warning = "prompt expansion returned only quotes or a label; using the prompt as typed"
            log.warning(warning)
            return Expansion(prompt, prompt, self.kind, expanded=False, warnings=(warning,))
        return Expansion(text, prompt, self.kind, expanded=True)


@dataclass
class PassThroughExpander:
    """No expansion: the prompt as typed."""

    kind: ExpanderKind = field(default=ExpanderKind.NONE, init=False)

    def expand(self, prompt: str, seed: int | None = None) -> Expansion:
        return Expansion(prompt, prompt, self.kind, expanded=False)


def load_expander(
    kind: ExpanderKind | str = ExpanderKind.WORLD,
    *,
    url: str | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
) -> Expander:
    """An expander by name; "llm" reads the endpoint from the arguments or KINEMA_LLM_* env vars."""
    try:
        kind = ExpanderKind(kind)
    except ValueError:
        valid = ", ".join(k.value for k in ExpanderKind)
        raise ValueError(f"unknown prompt expander {kind!r}; valid: {valid}") from None
    if kind is ExpanderKind.WORLD:
        return WorldExpander()
    if kind is ExpanderKind.NONE:
        return PassThroughExpander()
    config = EndpointConfig.from_env(
        url=url, model=model, api_key=api_key, timeout=timeout, retries=retries
    )
    return LLMExpander(config)
