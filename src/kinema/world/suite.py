"""WorldBench's public prompt suite: fixed prompts with their specs and generation seeds.

The suite is stratified: every scenario (free, collide, occlude, paint) under every camera move,
at each aspect ratio (square, landscape, portrait), three draws each. It is generated once by
`build_suite` and committed as `suite.jsonl` next to this file; `load_suite` reads that file, so a
change to the generator never silently changes the benchmark.
"""

from __future__ import annotations

import json
from importlib import resources
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from kinema.world.captions import detailed_caption, reverse_world_directions, short_prompt
from kinema.world.sampler import Scenario, sample_scene
from kinema.world.spec import Camera, Color, SceneSpec, Shape

# (color, shape) pairs that training sets leave out (`kinema world make --exclude-heldout`); the
# held-out suite (`heldout.jsonl`) asks only for scenes with at least one of them, so it measures
# whether a model composes attributes it has seen only apart.
HELDOUT_PAIRS: frozenset[tuple[Color, Shape]] = frozenset(
    {(Color.YELLOW, Shape.SQUARE), (Color.CYAN, Shape.TRIANGLE)}
)
HELDOUT_SEED = 20261122
HELDOUT_SIZE = 60

SUITE_SIZES: tuple[tuple[int, int], ...] = ((64, 64), (96, 64), (64, 96))  # square, wide, tall
SUITE_FRAMES = 33
SUITE_FPS = 8.0
DRAWS_PER_CELL = 3
SUITE_SEED = 20261121


def build_suite(seed: int = SUITE_SEED) -> list[dict[str, Any]]:
    """Every (size, scenario, camera) cell, DRAWS_PER_CELL times: at most 3 × 4 × 7 × 3 = 252.

    A cell whose motion cannot fit in view (a collision under a pan in a square frame) is skipped.
    """
    entries = []
    cells = product(SUITE_SIZES, Scenario, Camera, range(DRAWS_PER_CELL))
    for k, ((width, height), scenario, camera, draw) in enumerate(cells):
        rng = np.random.default_rng([seed, k])
        try:
            spec = sample_scene(
                rng, width, height, SUITE_FRAMES, SUITE_FPS, scenario=scenario, camera=camera
            )
        except RuntimeError:
            continue
        spec.extras.update(suite_index=k, draw=draw)
        entries.append(_entry(f"wb-{k:04d}", spec, rng))
    return entries


def has_heldout_pair(spec: SceneSpec) -> bool:
    return any((o.color, o.shape) in HELDOUT_PAIRS for o in spec.objects)


def build_heldout_suite(seed: int = HELDOUT_SEED, n: int = HELDOUT_SIZE) -> list[dict[str, Any]]:
    """`n` prompts whose scenes hold at least one of HELDOUT_PAIRS, cycling through the suite's
    sizes and every scenario; the rest (camera, motion, background) is drawn as in training."""
    entries: list[dict[str, Any]] = []
    cells = list(product(SUITE_SIZES, Scenario))
    k = 0
    while len(entries) < n:
        (width, height), scenario = cells[len(entries) % len(cells)]
        rng = np.random.default_rng([seed, k])
        k += 1
        try:
            spec = sample_scene(rng, width, height, SUITE_FRAMES, SUITE_FPS, scenario=scenario)
        except RuntimeError:
            continue
        if not has_heldout_pair(spec):
            continue
        spec.extras.update(heldout_index=k - 1)
        entries.append(_entry(f"wh-{len(entries):04d}", spec, rng))
    return entries


def _entry(entry_id: str, spec: SceneSpec, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "id": entry_id,
        "prompt": short_prompt(spec, rng),
        "caption": detailed_caption(spec, rng),
        "seed": int(rng.integers(0, 2**31 - 1)),  # the seed a model generates with
        "spec": spec.to_dict(),
        "width": spec.width,
        "height": spec.height,
        "frames": spec.num_frames,
        "fps": spec.fps,
    }


def write_suite(path: str | Path, entries: list[dict[str, Any]]) -> None:
    Path(path).write_text("".join(json.dumps(e) + "\n" for e in entries))


def load_suite(name: str = "suite") -> list[dict[str, Any]]:
    """A committed prompt suite: "suite" (the public one) or "heldout" (unseen combinations)."""
    if name not in ("suite", "heldout"):
        raise ValueError(f"unknown suite {name!r}; valid: 'suite', 'heldout'")
    text = resources.files("kinema.world").joinpath(f"{name}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def direction_entries(name: str = "suite", n: int | None = None) -> list[dict[str, Any]]:
    """The first `n` entries (all with None) of a suite whose prompt names a direction: the
    scenes the direction benchmarks measure (`reverse_world_directions` can reverse them)."""
    entries = [e for e in load_suite(name) if reverse_world_directions(e["prompt"])]
    return entries if n is None else entries[:n]
