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

from kinema.world.captions import detailed_caption, short_prompt
from kinema.world.sampler import Scenario, sample_scene
from kinema.world.spec import Camera, SceneSpec

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
        entries.append(
            {
                "id": f"wb-{k:04d}",
                "prompt": short_prompt(spec, rng),
                "caption": detailed_caption(spec, rng),
                "seed": int(rng.integers(0, 2**31 - 1)),  # the seed a model generates with
                "spec": spec.to_dict(),
                "width": width,
                "height": height,
                "frames": SUITE_FRAMES,
                "fps": SUITE_FPS,
            }
        )
    return entries


def write_suite(path: str | Path, entries: list[dict[str, Any]]) -> None:
    Path(path).write_text("".join(json.dumps(e) + "\n" for e in entries))


def load_suite() -> list[dict[str, Any]]:
    """The committed public prompt suite."""
    text = resources.files("kinema.world").joinpath("suite.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def suite_specs() -> list[SceneSpec]:
    return [SceneSpec.from_dict(e["spec"]) for e in load_suite()]
