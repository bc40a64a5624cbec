"""Does WorldBench measure what it claims? Validity figures, from mp4 files as a model writes them.

    python benchmarks/worldbench_validity.py --n 300 --flips 40

1. Ground truth: N world clips (square, landscape, portrait) scored against their own specs.
2. Shuffled: the same videos against another clip's spec (chance level).
3. Noise: uniform random videos against the specs.
4. One attribute changed: a clip re-rendered with another color, another shape, time reversed, the
   opposite pan, the occluder removed, the trail removed, or a colored floor in another color,
   scored against the original spec; the rate at which exactly the changed attribute's check (and
   no other) fails.

Prints tables and writes JSON (default benchmarks/results/worldbench_validity.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kinema.reports import write_report
from kinema.video import read_video, write_video
from kinema.world.bench import bench_video, summarize
from kinema.world.dataset import make_world, read_manifest
from kinema.world.evaluate import evaluate_manifest
from kinema.world.render import render_scene
from kinema.world.sampler import Scenario, is_valid, sample_scene
from kinema.world.spec import Camera, Color, Motion, SceneSpec, Shape

SIZES = [(64, 64), (96, 64), (64, 96)]


@dataclasses.dataclass
class Flip:
    """Re-render a spec with one attribute changed; the check that must then fail, alone."""

    name: str
    scenario: Scenario
    camera: Camera | None
    applies: Callable[[SceneSpec], bool]
    change: Callable[[SceneSpec], tuple[np.ndarray, set[tuple[str, str]]]]  # frames, checks


def _object_name(spec: SceneSpec, i: int = 0) -> str:
    o = spec.objects[i]
    return f"object {i} ({o.color.value} {o.shape.value})"


def _with_object(spec: SceneSpec, **changes) -> SceneSpec:
    objects = [dataclasses.replace(spec.objects[0], **changes), *spec.objects[1:]]
    return dataclasses.replace(spec, objects=objects)


def _recolor(spec: SceneSpec):
    other = next(c for c in Color if c not in {o.color for o in spec.objects})
    return render_scene(_with_object(spec, color=other)), {("color", _object_name(spec))}


def _reshape(spec: SceneSpec):
    other = next(s for s in Shape if s is not spec.objects[0].shape)
    return render_scene(_with_object(spec, shape=other)), {("shape", _object_name(spec))}


def _reverse(spec: SceneSpec):
    movers = [i for i, o in enumerate(spec.objects) if o.motion is Motion.LINEAR]
    return render_scene(spec)[::-1], {("motion", _object_name(spec, i)) for i in movers}


def _opposite_pan(spec: SceneSpec):
    flipped = dataclasses.replace(spec, camera=Camera.PAN_RIGHT)
    return render_scene(flipped), {("camera", spec.camera.value)}


def _remove_occluder(spec: SceneSpec):
    no_pillar = dataclasses.replace(spec, occluder=None)
    return render_scene(no_pillar), {("permanence", "occluded object")}


def _remove_trail(spec: SceneSpec):
    return render_scene(_with_object(spec, trail=False)), {("trail", _object_name(spec))}


def _refloor(spec: SceneSpec):
    taken = {o.color for o in spec.objects} | {spec.floor}
    other = next(c for c in Color if c not in taken)
    return render_scene(dataclasses.replace(spec, floor=other)), {("color", "floor")}


FLIPS = [
    Flip("another color", Scenario.FREE, None, lambda s: True, _recolor),
    Flip("another shape", Scenario.FREE, None, lambda s: True, _reshape),
    Flip(
        "time reversed",
        Scenario.FREE,
        Camera.STATIC,
        lambda s: (
            all(o.motion in (Motion.LINEAR, Motion.STATIC) for o in s.objects)
            and s.objects[0].motion is Motion.LINEAR
        ),
        _reverse,
    ),
    Flip(
        "opposite pan",
        Scenario.FREE,
        Camera.PAN_LEFT,
        lambda s: is_valid(dataclasses.replace(s, camera=Camera.PAN_RIGHT)),
        _opposite_pan,
    ),
    Flip("occluder removed", Scenario.OCCLUDE, None, lambda s: True, _remove_occluder),
    Flip("trail removed", Scenario.PAINT, None, lambda s: True, _remove_trail),
    Flip(
        "another floor color",
        Scenario.FREE,
        None,
        lambda s: isinstance(s.floor, Color),
        _refloor,
    ),
]


def flip_rate(flip: Flip, count: int, tmp: Path) -> tuple[float, int]:
    """Fraction of `count` clips where exactly the changed checks fail (through an mp4)."""
    exact, done, seed = 0, 0, 0
    while done < count:
        seed += 1
        size = SIZES[seed % len(SIZES)]
        rng = np.random.default_rng([99, seed])
        spec = sample_scene(rng, *size, scenario=flip.scenario, camera=flip.camera)
        if not flip.applies(spec):
            continue
        frames, expected = flip.change(spec)
        path = write_video(tmp / "flip.mp4", np.ascontiguousarray(frames), fps=spec.fps)
        result = bench_video(read_video(path).frames, spec)
        failed = {(c.category, c.name) for c in result.checks if not c.passed}
        exact += failed == expected
        done += 1
    return exact / count, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="ground-truth clips")
    parser.add_argument("--flips", type=int, default=40, help="clips per changed attribute")
    parser.add_argument("--json", default="benchmarks/results/worldbench_validity.json")
    args = parser.parse_args()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        records = read_manifest(make_world(tmp, args.n, seed=2026, sizes=SIZES, progress=False))
        truth = evaluate_manifest(records, progress=False)
        shuffled = evaluate_manifest(records, shuffle_seed=0, progress=False)
        rng = np.random.default_rng(0)
        noise = []
        for record in records[:100]:
            spec = SceneSpec.from_dict(record["spec"])
            video = rng.integers(0, 256, (spec.num_frames, spec.height, spec.width, 3), np.uint8)
            noise.append(bench_video(video, spec))
        noise_report = summarize(noise)
        flips = {f.name: flip_rate(f, args.flips, Path(tmp))[0] for f in FLIPS}
    seconds = time.perf_counter() - start

    print(f"{'category':<12}{'truth':>8}{'shuffled':>10}{'noise':>8}{'checks':>8}")
    for cat in truth["categories"]:
        print(
            f"{cat:<12}{truth['categories'][cat]:>8.3f}{shuffled['categories'][cat]:>10.3f}"
            f"{noise_report['categories'].get(cat, float('nan')):>8.3f}"
            f"{truth['checks_per_category'][cat]:>8}"
        )
    print(
        f"{'overall':<12}{truth['overall']:>8.3f}{shuffled['overall']:>10.3f}"
        f"{noise_report['overall']:>8.3f}{truth['n']:>8} clips"
    )
    print(f"\n{'one attribute changed':<24}{'exactly that check fails':>26}")
    for name, rate in flips.items():
        print(f"{name:<24}{rate:>26.3f}")
    print(f"\n{seconds:.0f} s")
    result = {
        "clips": args.n,
        "sizes": [f"{w}x{h}" for w, h in SIZES],
        "ground_truth": {k: truth[k] for k in ("overall", "categories", "checks_per_category")},
        "shuffled_specs": {k: shuffled[k] for k in ("overall", "categories")},
        "noise": {k: noise_report[k] for k in ("overall", "categories", "n")},
        "one_attribute_changed": {"clips_each": args.flips, "exact_failure_rate": flips},
        "seconds": round(seconds, 1),
    }
    write_report(args.json, result)


if __name__ == "__main__":
    main()
