"""Direction words of a text and their opposites: does a model read "left" from "right"?

    >>> reverse_directions("a red ball slides left as the camera pans up")
    'a red ball slides right as the camera pans down'
    >>> reverse_directions("a blue square sits still") is None
    True

Every direction a text can name flips: left and right, up and down (diagonals too: "up and to the
left" becomes "down and to the right"), "toward the top" and "toward the bottom", and zooms ("zooms
in" and "zooms out", "pushes in" and "pulls back", "closes in" and "widens out"). Places are not
directions and stay: "a floor runs along the bottom" keeps its floor. A text that names no
direction has no reverse (None).

`benchmarks/text_sensitivity.py` compares a transformer's predictions under a prompt and under
its reverse. The reversal is word for word, so it can yield wording a training set never holds
(the world says "the view slides upward" but "the view slides down"); a comparison that must not
reward spotting odd wording keeps to texts whose reversal reads like the originals.
"""

from __future__ import annotations

import re

__all__ = ["OPPOSITES", "reverse_directions"]

_PAIRS = (
    ("left", "right"),
    ("leftward", "rightward"),
    ("leftwards", "rightwards"),
    ("up", "down"),
    ("upward", "downward"),
    ("upwards", "downwards"),
    ("toward the top", "toward the bottom"),
    ("towards the top", "towards the bottom"),
    ("to the top", "to the bottom"),
    ("zoom in", "zoom out"),
    ("zooms in", "zooms out"),
    ("zooming in", "zooming out"),
    ("push in", "pull back"),
    ("pushes in", "pulls back"),
    ("pushing in", "pulling back"),
    ("close in", "widen out"),
    ("closes in", "widens out"),
    ("closing in", "widening out"),
)
# each phrase -> its opposite, both ways
OPPOSITES: dict[str, str] = {a: b for a, b in _PAIRS} | {b: a for a, b in _PAIRS}
# longest first, so "toward the top" wins over a bare word inside it
_PATTERN = re.compile(
    r"\b(" + "|".join(re.escape(p) for p in sorted(OPPOSITES, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)


def _opposite(match: re.Match[str]) -> str:
    found = match.group(0)
    opposite = OPPOSITES[found.lower()]
    return opposite[0].upper() + opposite[1:] if found[0].isupper() else opposite


def reverse_directions(text: str) -> str | None:
    """``text`` with every direction replaced by its opposite; None when it names none."""
    reversed_text, count = _PATTERN.subn(_opposite, text)
    return reversed_text if count else None
