"""Reversing a world text's directions in the world's own words: the reverse of a scene's prompt
or caption is what the world writes for the reversed scene."""

import numpy as np
import pytest

from kinema.world.captions import (
    detailed_caption,
    reverse_world_directions,
    reversed_scene,
    short_prompt,
)
from kinema.world.sampler import sample_scene


@pytest.mark.parametrize("write", [short_prompt, detailed_caption])
def test_the_reverse_of_a_world_text_is_the_worlds_text_of_the_reversed_scene(write):
    rng = np.random.default_rng(0)
    reversed_texts = 0
    for seed in range(300):
        spec = sample_scene(rng)
        text = write(spec, np.random.default_rng(seed))
        mirrored = write(reversed_scene(spec), np.random.default_rng(seed))
        got = reverse_world_directions(text)
        if got is None:  # nothing to reverse: the reversed scene reads the same
            assert mirrored == text
            continue
        reversed_texts += 1
        assert got == mirrored, text
        assert reverse_world_directions(got) == text  # an involution
    assert reversed_texts > 100  # most scenes move something or the camera


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the view slides upward over a box", "the view slides down over a box"),
        ("The camera zooms in on a red ball.", "The camera zooms out from a red ball."),
        ("a ball glides toward the top left", "a ball glides to the bottom right"),
        ("Leftward it goes, panning up", "Rightward it goes, panning down"),
    ],
)
def test_phrases_become_the_worlds_own_opposites_and_keep_their_capital(text, expected):
    assert reverse_world_directions(text) == expected


def test_places_and_direction_free_texts_stay():
    for text in ["a blue square sits still", "the camera is still", "a ball falls and bounces", ""]:
        assert reverse_world_directions(text) is None
    assert reverse_world_directions("there is a gray floor at the bottom") is None
    assert reverse_world_directions("an upright block, brighter") is None  # whole words only
