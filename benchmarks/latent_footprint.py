"""How much a word changes the clip the VAE hands the transformer: each edit of
`text_sensitivity.py` made to the scene itself, and the latents of both compared.

    python benchmarks/latent_footprint.py [--model DIR] [--suite suite] [--n 32]

For each WorldBench scene whose prompt names a direction (the scenes `text_sensitivity.py`
measures), the scene is rendered losslessly and encoded with the model's VAE, and so is the same
scene with one thing changed, the thing the prompt edit of `text_sensitivity.py` changes:

- **directions**: every object's direction and the camera's move turned round, starts kept
  (`kinema.world.captions.reversed_scene`: the scene whose text is the reversed prompt);
- **colors**: every object's color moved one step round the palette (red -> orange, ...);
- **shapes**: every object's shape made the next one (circle -> square -> triangle -> circle).

The footprint of an edit is the mean squared difference of the two latent clips, per latent
element, overall and per latent frame. A model that predicted each clip exactly from its prompt
would see an error gap of about this size in `text_sensitivity.py` under the edited prompt; a
blurrier prediction sees less. A large footprint with a zero gap means that the word changes the
clip a lot and the model still does not use it. Prints a table and writes JSON (default
benchmarks/results/latent_footprint.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from kinema.pipeline import Pipeline
from kinema.reports import write_report
from kinema.world.captions import reversed_scene
from kinema.world.render import render_scene
from kinema.world.spec import Color, SceneSpec, Shape
from kinema.world.suite import direction_entries

_COLORS = list(Color)
_SHAPES = list(Shape)


def moved_colors(spec: SceneSpec) -> SceneSpec:
    """Every object's color one step round the palette (the edit of `next_colors`)."""
    objects = [
        dataclasses.replace(o, color=_COLORS[(_COLORS.index(o.color) + 1) % len(_COLORS)])
        for o in spec.objects
    ]
    return dataclasses.replace(spec, objects=objects)


def moved_shapes(spec: SceneSpec) -> SceneSpec:
    """Every object's shape made the next one (the edit of `next_shapes`)."""
    objects = [
        dataclasses.replace(o, shape=_SHAPES[(_SHAPES.index(o.shape) + 1) % len(_SHAPES)])
        for o in spec.objects
    ]
    return dataclasses.replace(spec, objects=objects)


EDITS: dict[str, Callable[[SceneSpec], SceneSpec]] = {
    "directions": reversed_scene,
    "colors": moved_colors,
    "shapes": moved_shapes,
}


def measure(pipe: Pipeline, entries: list[dict]) -> dict:
    """Per edit: scenes, the mean footprint, its mean per latent frame, and the latents' power."""
    rows: dict[str, list[np.ndarray]] = {name: [] for name in EDITS}
    skipped = {name: 0 for name in EDITS}
    power = []
    for entry in tqdm(entries, desc="scenes", unit="scene"):
        spec = SceneSpec.from_dict(entry["spec"])
        with torch.no_grad():
            latents = pipe.encode_video(render_scene(spec)).float()  # (C, t, h, w)
            power.append(float(latents.square().mean()))
            for name, edit in EDITS.items():
                try:
                    frames = render_scene(edit(spec))
                except ValueError:  # a new color is the floor's; colliders turned apart
                    skipped[name] += 1
                    continue
                edited = pipe.encode_video(frames).float()
                per_frame = (edited - latents).square().mean(dim=(0, 2, 3))  # (t,)
                rows[name].append(per_frame.numpy())
    result = {"latent_power": float(np.mean(power))}
    for name, per_frame in rows.items():
        table = np.stack(per_frame)  # (scenes, t)
        result[name] = {
            "scenes": len(per_frame),
            "skipped": skipped[name],
            "footprint": float(table.mean()),
            "per_latent_frame": table.mean(axis=0).tolist(),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped)")
    parser.add_argument("--suite", default="suite", help="WorldBench suite: suite or heldout")
    parser.add_argument("--n", type=int, default=32, help="scenes measured (see above)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/latent_footprint.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    entries = direction_entries(args.suite, args.n)
    start = time.perf_counter()
    pipe = Pipeline.from_pretrained(args.model)
    result = measure(pipe, entries)
    print(f"{'edit':<12}{'scenes':>7}{'footprint':>11}   per latent frame")
    for name in EDITS:
        row = result[name]
        frames = " ".join(f"{v:.3f}" for v in row["per_latent_frame"])
        print(f"{name:<12}{row['scenes']:>7}{row['footprint']:>11.4f}   {frames}")
    print(f"latent power (mean square of the clips' latents): {result['latent_power']:.4f}")
    out = {
        "settings": {
            "model": args.model or "models/default",
            "suite": args.suite,
            "n": len(entries),
            "threads": args.threads,
        },
        "edits": result,
        "seconds": time.perf_counter() - start,
    }
    write_report(args.json, out)
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
