"""Captions name what a scene shows, vary their wording, and stay deterministic."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kinema.world.captions import caption_vocabulary, detailed_caption, short_prompt
from kinema.world.sampler import sample_scene
from kinema.world.spec import Camera, Color, Direction, Motion, Pattern, SceneSpec, Shape, Speed

SIZES = [(64, 64), (96, 64), (64, 96)]
VOCAB = caption_vocabulary()
SPEED_KEYWORDS = {
    Speed.SLOW: {"slowly", "gently", "leisurely", "slow"},
    Speed.FAST: {"quickly", "fast", "rapidly", "swiftly"},
}
# Every phrasing of a direction must contain one word of each group.
DIRECTION_KEYWORDS: dict[Direction, list[set[str]]] = {
    Direction.LEFT: [{"left", "leftward"}],
    Direction.RIGHT: [{"right", "rightward"}],
    Direction.UP: [{"up", "upward", "top"}],
    Direction.DOWN: [{"down", "downward", "bottom"}],
    Direction.UP_LEFT: [{"up", "top"}, {"left"}],
    Direction.UP_RIGHT: [{"up", "top"}, {"right"}],
    Direction.DOWN_LEFT: [{"down", "bottom"}, {"left"}],
    Direction.DOWN_RIGHT: [{"down", "bottom"}, {"right"}],
}
CAMERA_KEYWORDS: dict[Camera, set[str]] = {
    Camera.PAN_LEFT: {"left"},
    Camera.PAN_RIGHT: {"right"},
    Camera.PAN_UP: {"up", "upward"},
    Camera.PAN_DOWN: {"down", "downward"},
    Camera.ZOOM_IN: {"in"},
    Camera.ZOOM_OUT: {"out", "back"},
}
PATTERN_KEYWORDS = {Pattern.CHECKERED: "checker", Pattern.DOTTED: "dot", Pattern.GRID: "grid"}
COUNT_KEYWORDS = {1: {"one", "single"}, 2: {"two"}, 3: {"three"}}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text, flags=re.IGNORECASE) is not None


def _texts(spec: SceneSpec, seed: int) -> tuple[str, str]:
    return short_prompt(spec, np.random.default_rng(seed)), detailed_caption(
        spec, np.random.default_rng(seed + 1)
    )


@pytest.fixture(scope="module")
def captioned() -> list[tuple[SceneSpec, str, str]]:
    """~300 sampled specs over several sizes, each with one prompt and one detailed caption."""
    out = []
    for width, height in SIZES:
        for seed in range(100):
            spec = sample_scene(np.random.default_rng(1000 * width + seed), width, height)
            out.append((spec, *_texts(spec, seed)))
    return out


def test_samples_cover_the_vocabulary(captioned):
    specs = [s for s, _, _ in captioned]
    assert {s.extras["scenario"] for s in specs} == {"free", "collide", "occlude", "paint"}
    assert {s.camera for s in specs} == set(Camera)
    assert {o.motion for s in specs for o in s.objects} == set(Motion)


def test_every_object_color_and_shape_is_named(captioned):
    for spec, prompt, caption in captioned:
        present = {o.color.value for o in spec.objects}
        floor = {spec.floor.value} if isinstance(spec.floor, Color) else set()
        for text in (prompt, caption):
            assert all(_has(text, c) for c in present), (spec.objects, text)
            named = {c.value for c in Color if _has(text, c.value)}
            assert named <= present | floor, text
            if floor:  # a colored floor is said in both texts
                assert _has(text, f"{spec.floor.value} floor"), text
            for obj in spec.objects:
                assert any(_has(text, w) for w in VOCAB[f"shape.{obj.shape.value}"]), text


def test_shape_synonyms_are_distinct():
    tables = [set(VOCAB[f"shape.{s.value}"]) for s in Shape]
    assert all(len(t) >= 2 for t in tables)
    assert sum(len(t) for t in tables) == len(set().union(*tables))


def test_prompt_names_motion_and_moving_camera(captioned):
    for spec, prompt, _ in captioned:
        words = _words(prompt)
        for obj in spec.objects:
            if obj.motion is Motion.LINEAR:
                assert all(group & words for group in DIRECTION_KEYWORDS[obj.direction]), prompt
            elif obj.motion is Motion.FALL:
                on_floor = isinstance(spec.floor, Color) and _has(prompt, "bounces on a")
                assert ({"falls", "drops"} & words or on_floor) and "bounces" in words, prompt
            elif obj.motion is Motion.COLLIDE:
                assert {"collide", "bump"} & words and "bounce" in words, prompt
        if spec.camera is not Camera.STATIC:
            assert {"camera", "view", "panning", "zooming"} & words, prompt
            assert CAMERA_KEYWORDS[spec.camera] & words, prompt
            phrases = (
                VOCAB[f"camera.{spec.camera.value}"] + VOCAB[f"camera_tag.{spec.camera.value}"]
            )
            assert any(_has(prompt, p) for p in phrases), prompt


def test_caption_names_every_object_attribute(captioned):
    for spec, _, caption in captioned:
        words = _words(caption)
        assert COUNT_KEYWORDS[len(spec.objects)] & words, caption
        for obj in spec.objects:
            assert any(_has(caption, w) for w in VOCAB[f"size.{obj.size.value}"]), caption
            if obj.motion in (Motion.LINEAR, Motion.COLLIDE):
                assert SPEED_KEYWORDS[obj.speed] & words, caption
                assert all(group & words for group in DIRECTION_KEYWORDS[obj.direction]), caption
        speeds = {o.speed for o in spec.objects if o.speed is not None}
        for speed in set(Speed) - speeds:  # no speed word a mover does not have
            assert not SPEED_KEYWORDS[speed] & words, caption
        assert ("trail" in words) == any(o.trail for o in spec.objects), caption
        for obj in spec.objects:
            if obj.trail:
                assert _has(caption, f"{obj.color.value} trail"), caption


def test_caption_names_the_setting_and_camera(captioned):
    for spec, _, caption in captioned:
        words, bg = _words(caption), spec.background
        assert _has(caption, bg.tone.value), caption
        if bg.pattern is not Pattern.PLAIN:
            assert PATTERN_KEYWORDS[bg.pattern] in caption and _has(caption, bg.accent.value)
        assert ("floor" in words) == (spec.floor is not None), caption
        if spec.floor is not None:
            assert _has(caption, f"{spec.floor.value} floor"), caption
        assert bool({"pillar", "column"} & words) == (spec.occluder is not None), caption
        if spec.occluder is not None:
            assert _has(caption, spec.occluder.tone.value) and "other side" in caption
        assert {"camera", "view", "shot"} & words, caption
        if spec.camera is not Camera.STATIC:
            assert CAMERA_KEYWORDS[spec.camera] & words, caption


def test_prompt_mentions_trail_and_occluder(captioned):
    for spec, prompt, _ in captioned:
        words = _words(prompt)
        if any(o.trail for o in spec.objects):
            assert {"line", "trail"} & words, prompt
        if spec.occluder is not None:
            assert {"pillar", "column"} & words and _has(prompt, spec.occluder.tone.value)


def test_articles_and_punctuation(captioned):
    for _, prompt, caption in captioned:
        for text in (prompt, caption):
            assert not re.search(r"\ba [aeiou]", text, flags=re.IGNORECASE), text
            assert not re.search(r"\ban [^aeiou]", text, flags=re.IGNORECASE), text
            assert "  " not in text and " ," not in text and text == text.strip(), text
        assert prompt == prompt.lower() and not prompt.endswith(".")
        assert caption[0].isupper() and caption.endswith(".") and ".." not in caption
        sentences = re.split(r"(?<=\.) ", caption)
        assert all(s[0].isupper() for s in sentences), caption


def test_an_before_orange():
    rng = np.random.default_rng(0)
    for _ in range(50):
        spec = sample_scene(rng)
        if any(o.color is Color.ORANGE for o in spec.objects):
            text_rng = np.random.default_rng(1)
            assert re.search(
                r"\ban (big |large |little |small )?orange\b", short_prompt(spec, text_rng)
            )
            break
    else:
        pytest.fail("no orange object sampled")


def test_same_rng_state_gives_same_text(captioned):
    for spec, _, _ in captioned[::10]:
        assert _texts(spec, 7) == _texts(spec, 7)
        rng = np.random.default_rng(3)
        first = (short_prompt(spec, rng), detailed_caption(spec, rng))
        rng = np.random.default_rng(3)
        assert (short_prompt(spec, rng), detailed_caption(spec, rng)) == first


def test_wording_varies_across_seeds(captioned):
    for spec, _, _ in captioned[::15]:
        prompts = {short_prompt(spec, np.random.default_rng(s)) for s in range(30)}
        captions = {detailed_caption(spec, np.random.default_rng(s)) for s in range(30)}
        assert len(prompts) >= 5, prompts
        assert len(captions) >= 10, captions


def test_vocabulary_covers_every_enum():
    for prefix, enum in [("shape", Shape), ("speed", Speed), ("direction", Direction)]:
        assert all(len(VOCAB[f"{prefix}.{v.value}"]) >= 2 for v in enum)
    for camera in Camera:
        assert len(VOCAB[f"camera.{camera.value}"]) >= 2
        assert len(VOCAB[f"camera_tag.{camera.value}"]) >= 2
    assert all(isinstance(w, str) for words in VOCAB.values() for w in words)
