"""At which noise level a DiT decides which way a scene moves, and whether the prompt takes part.

    python benchmarks/direction_commit.py [--model DIR ...] [--suite suite] [--n 24]

For each WorldBench scene whose prompt names a direction, the scene and its reversed twin (every
object's direction and the camera's move turned round, `kinema.world.captions.reversed_scene`)
are rendered and encoded. With latent frame 0 given clean, as image to video gives it (both
scenes share it), the DiT predicts the clean clip, ``x0 = x_t - t * v``, from the true clip noised
to level t, once under the true prompt and once under the reversed prompt (the same noise). The
cells are the mean squared distances of that prediction, over the frames after frame 0, to the
true clip and to the reversed one.

A prediction nearer the true clip under *both* prompts means the noisy clip itself told the
model the direction; one that follows the prompt (nearer the reversed clip under the reversed
prompt) means the words decide it; equal distances under both prompts mean neither does, and a
sampler starting there picks the direction from its noise. Prints a table per model and writes
JSON (default benchmarks/results/direction_commit.json).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from kinema.flow import interpolate
from kinema.patches import patchify
from kinema.pipeline import Pipeline
from kinema.reports import write_report
from kinema.world.captions import reverse_world_directions, reversed_scene
from kinema.world.render import render_scene
from kinema.world.spec import SceneSpec
from kinema.world.suite import direction_entries

TIMES = (1.0, 0.99, 0.97, 0.95, 0.9)
CELLS = ("true_prompt_to_true", "true_prompt_to_reversed", "reversed_prompt_to_true",
         "reversed_prompt_to_reversed")  # fmt: skip


def predicted_clip(
    pipe: Pipeline, x_t: torch.Tensor, positions: torch.Tensor, timesteps: torch.Tensor, prompt: str
) -> torch.Tensor:
    """The DiT's clean-clip prediction ``x_t - t * v`` of one clip's tokens under ``prompt``."""
    text = pipe.encode_text(prompt, "")[0]  # (L, text_dim)
    n = x_t.shape[0]
    v = pipe.dit(
        x_t,
        positions,
        torch.zeros(n, dtype=torch.long),
        timesteps,
        text,
        torch.zeros(text.shape[0], dtype=torch.long),
    )
    return x_t - timesteps[:, None] * v.float()


def measure(pipe: Pipeline, entries: list[dict]) -> dict:
    """Per t, the mean of each of CELLS over the scenes whose reversed twin renders."""
    cells = np.zeros((len(entries), len(TIMES), len(CELLS)))
    kept = []
    for s, entry in enumerate(tqdm(entries, desc="scenes", unit="scene")):
        spec = SceneSpec.from_dict(entry["spec"])
        try:
            reversed_frames = render_scene(reversed_scene(spec))
        except ValueError:  # colliding objects turned round move apart: not a world scene
            continue
        kept.append(s)
        reversed_prompt = reverse_world_directions(entry["prompt"])
        with torch.no_grad():
            x0, positions = patchify(
                pipe.encode_video(render_scene(spec)).float(), pipe.index.patch
            )
            xr, _ = patchify(pipe.encode_video(reversed_frames).float(), pipe.index.patch)
            given = positions[:, 0] < 1  # (N,) latent frame 0, the same in both clips
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(s))
            for i, t in enumerate(TIMES):
                timesteps = torch.where(given, 0.0, t)  # (N,)
                x_t = torch.where(given[:, None], x0, interpolate(x0, noise, t))
                for p, prompt in enumerate((entry["prompt"], reversed_prompt)):
                    pred = predicted_clip(pipe, x_t, positions, timesteps, prompt)[~given]
                    for c, clip in enumerate((x0, xr)):
                        cells[s, i, 2 * p + c] = float((pred - clip[~given]).square().mean())
    if not kept:
        raise ValueError(
            f"none of the {len(entries)} scenes has a reversed twin the world can render "
            "(colliding objects turned round move apart); measure more scenes (--n)"
        )
    mean = cells[kept].mean(axis=0)  # (len(TIMES), len(CELLS))
    return {
        "scenes": len(kept),
        "skipped": len(entries) - len(kept),
        "by_t": {
            str(t): dict(zip(CELLS, mean[i].tolist(), strict=True)) for i, t in enumerate(TIMES)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", default=None, help="model folder, repeatable (the shipped)"
    )
    parser.add_argument("--suite", default="suite", help="WorldBench suite: suite or heldout")
    parser.add_argument("--n", type=int, default=24, help="scenes drawn (see above)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/direction_commit.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    entries = direction_entries(args.suite, args.n)
    start = time.perf_counter()
    models = {}
    for model in args.model or [None]:
        models[model or "models/default"] = measure(Pipeline.from_pretrained(model), entries)
    print(f"{'model':<28}{'t':>6}  true prompt: to true / to reversed   reversed prompt: ...")
    for model, row in models.items():
        for t, c in row["by_t"].items():
            print(
                f"{model[-28:]:<28}{t:>6}  {c[CELLS[0]]:>10.3f} / {c[CELLS[1]]:<10.3f}"
                f"{c[CELLS[2]]:>19.3f} / {c[CELLS[3]]:.3f}"
            )
    out = {
        "settings": {
            "suite": args.suite,
            "n": len(entries),
            "times": TIMES,
            "threads": args.threads,
        },
        "models": models,
        "seconds": time.perf_counter() - start,
    }
    write_report(args.json, out)
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
