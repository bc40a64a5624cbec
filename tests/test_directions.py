"""Reversing a text's directions: every direction flips, places and direction-free texts stay."""

import pytest

from kinema.language.directions import OPPOSITES, reverse_directions
from kinema.world.captions import CAMERA_CLAUSES, CAMERA_TAGS, DIRECTION_WORDS
from kinema.world.spec import Camera, Direction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a ball slides left as the camera pans up", "a ball slides right as the camera pans down"),
        ("moves diagonally up-left", "moves diagonally down-right"),
        ("glides up and to the right", "glides down and to the left"),
        ("travels toward the top left", "travels toward the bottom right"),
        ("drifts to the bottom right", "drifts to the top left"),
        ("The view widens out by the floor", "The view closes in by the floor"),
        ("a floor along the bottom; panning up", "a floor along the bottom; panning down"),
        ("Leftward it goes; the camera pushes in", "Rightward it goes; the camera pulls back"),
    ],
)
def test_every_direction_flips_and_places_stay(text, expected):
    assert reverse_directions(text) == expected
    assert reverse_directions(expected) == text  # an involution


def test_a_text_without_directions_has_no_reverse():
    for text in ["a blue square sits still", "the camera is still", "a ball falls and bounces", ""]:
        assert reverse_directions(text) is None
    assert reverse_directions("an upright block on the upper floor") is None  # whole words only


def same(phrase: str) -> str:
    """One spelling of a phrase's meaning: the world says "toward the top left" but "to the bottom
    right", and "the view slides upward" but "the view slides down"."""
    for long, short in (("toward ", "to "), ("upward", "up"), ("downward", "down")):
        phrase = phrase.replace(long, short)
    return phrase


def test_the_worlds_direction_vocabulary_all_reverses_to_the_opposite_direction():
    opposite = {
        Direction.LEFT: Direction.RIGHT,
        Direction.UP: Direction.DOWN,
        Direction.UP_LEFT: Direction.DOWN_RIGHT,
        Direction.UP_RIGHT: Direction.DOWN_LEFT,
    }
    opposite |= {b: a for a, b in opposite.items()}
    for direction, phrases in DIRECTION_WORDS.items():
        for phrase in phrases:
            want = {same(p) for p in DIRECTION_WORDS[opposite[direction]]}
            assert same(reverse_directions(phrase)) in want, phrase
    cameras = {
        Camera.PAN_LEFT: Camera.PAN_RIGHT,
        Camera.PAN_UP: Camera.PAN_DOWN,
        Camera.ZOOM_IN: Camera.ZOOM_OUT,
    }
    cameras |= {b: a for a, b in cameras.items()}
    for words in (CAMERA_CLAUSES, CAMERA_TAGS):
        for camera, phrases in words.items():
            for phrase in phrases:
                got = reverse_directions(phrase)
                if camera not in cameras:
                    assert got is None, phrase
                else:
                    assert same(got) in {same(p) for p in words[cameras[camera]]}, phrase


def test_opposites_pair_up():
    assert all(OPPOSITES[OPPOSITES[p]] == p for p in OPPOSITES)
