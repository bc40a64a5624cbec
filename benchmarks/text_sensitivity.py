"""How much a DiT's prediction depends on a word: its flow error under the true prompt against
the same prompt with the word changed.

    python benchmarks/text_sensitivity.py [--model DIR ...] [--suite suite] [--n 32]
        [--given-frames K]

For each WorldBench scene whose prompt names a direction, the scene is rendered losslessly and
encoded with the model's VAE; then, at several noise levels t with the same noise, the DiT
predicts the velocity under the true prompt and under an edited one, and the mean squared error
against the true velocity is taken for both. Three edits:

- **directions** reversed in the world's own words (`kinema.world.captions.
  reverse_world_directions`: left and right, up and down, diagonals, zooms in and out), so the
  edited prompt reads like another world prompt ("the view slides upward" becomes "the view
  slides down", the world's phrase, not "downward");
- **colors** (control): every color word moved one step round the palette (red -> orange, ...),
  a word the shipped model follows most of the time;
- **shapes**: every shape word made the next shape's (circle -> square -> triangle -> circle,
  each word to its counterpart: "ball" -> "box", "wedge" -> "ball").

A word-for-word reversal would write phrases no training text holds, and a model could fit them
worse for the wording alone, which would pass for reading the direction; the world's own
reversal leaves the direction as the only difference.

With ``--given-frames K`` the first K latent frames are given clean, as the modes give them
(K = 1: image to video's frame 0), and the error is over the frames after them: the objects'
starts and the background are then known, and the words decide what happens next.

A model that reads the word predicts worse under the edit: the gap ``err_edited - err_true`` is
positive, most clearly at high t, where the prompt is all the model has to go on. A gap of zero
means the word is ignored: sampling then picks a direction (or color) at random. Prints a table
per model (mean gap and the share of scenes where the true prompt fits better, per t) and writes
JSON (default benchmarks/results/text_sensitivity.json).
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
import torch
from tqdm import tqdm

from kinema.flow import interpolate, velocity_target
from kinema.patches import patchify
from kinema.pipeline import Pipeline
from kinema.reports import write_report
from kinema.world.captions import SHAPE_WORDS, reverse_world_directions
from kinema.world.render import render_scene
from kinema.world.spec import Color, SceneSpec
from kinema.world.suite import direction_entries

TIMES = (0.95, 0.85, 0.7, 0.5, 0.3)
_COLORS = [c.value for c in Color]
_COLOR_WORD = re.compile(r"\b(" + "|".join(_COLORS) + r")\b")


def next_colors(text: str) -> str | None:
    """Every color word moved one step round the palette; None when the text names none."""
    edited, count = _COLOR_WORD.subn(
        lambda m: _COLORS[(_COLORS.index(m.group(1)) + 1) % len(_COLORS)], text
    )
    return edited if count else None


_SHAPES = list(SHAPE_WORDS.values())
_NEXT_SHAPE = {
    word: _SHAPES[(s + 1) % len(_SHAPES)][i % len(_SHAPES[(s + 1) % len(_SHAPES)])]
    for s, words in enumerate(_SHAPES)
    for i, word in enumerate(words)
}
_SHAPE_WORD = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, _NEXT_SHAPE), key=len, reverse=True)) + r")\b"
)


def next_shapes(text: str) -> str | None:
    """Every shape word made the next shape's; None when the text names none."""
    edited, count = _SHAPE_WORD.subn(lambda m: _NEXT_SHAPE[m.group(1)], text)
    return edited if count else None


EDITS = {"directions": reverse_world_directions, "colors": next_colors, "shapes": next_shapes}


def velocity_errors(
    pipe: Pipeline,
    latents: torch.Tensor,
    prompt: str,
    edited: str,
    noises: int,
    given_frames: int = 0,
) -> np.ndarray:
    """(2, len(TIMES), noises) mean squared velocity errors of the clip `latents` (C, t, h, w)
    under `prompt` and under `edited`, with the same noise draws for both. The first
    `given_frames` latent frames are given clean (timestep 0), as image to video gives frame 0,
    and the error is over the other tokens."""
    x0, positions = patchify(latents, pipe.index.patch)  # (N, D), (N, 3)
    n = x0.shape[0]
    given = positions[:, 0] < given_frames  # (N,) tokens of the given latent frames
    if given.all():
        raise ValueError(
            f"given_frames={given_frames} gives all {latents.shape[1]} latent frames; "
            "nothing is left to predict"
        )
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(x0.shape, generator=g) for _ in range(noises)]
    texts = pipe.encode_text(prompt, edited)  # the pipeline's prompt and negative-prompt tokens
    out = np.zeros((2, len(TIMES), noises))
    sample_ids = torch.zeros(n, dtype=torch.long)
    for p, text in enumerate(texts):
        text_ids = torch.zeros(text.shape[0], dtype=torch.long)
        for i, t in enumerate(TIMES):
            timesteps = torch.where(given, 0.0, t)  # (N,)
            for k, eps in enumerate(noise):
                x_t = torch.where(given[:, None], x0, interpolate(x0, eps, t))
                v = pipe.dit(x_t, positions, sample_ids, timesteps, text, text_ids)
                error = (v.float() - velocity_target(x0, eps)).square().mean(dim=-1)  # (N,)
                out[p, i, k] = float(error[~given].mean())
    return out


def measure(pipe: Pipeline, entries: list[dict], noises: int, given_frames: int = 0) -> dict:
    """Per edit: the mean gap and the share of scenes where the true prompt fits better, per t."""
    gaps: dict[str, list[np.ndarray]] = {name: [] for name in EDITS}
    for entry in tqdm(entries, desc="scenes", unit="scene"):
        frames = render_scene(SceneSpec.from_dict(entry["spec"]))
        with torch.no_grad():
            latents = pipe.encode_video(frames).float()  # (C, t, h, w)
            for name, edit in EDITS.items():
                edited = edit(entry["prompt"])
                if edited is None:
                    continue
                errors = velocity_errors(
                    pipe, latents, entry["prompt"], edited, noises, given_frames
                )
                gaps[name].append((errors[1] - errors[0]).mean(axis=-1))  # (len(TIMES),)
    result = {}
    for name, rows in gaps.items():
        table = np.stack(rows)  # (scenes, len(TIMES))
        result[name] = {
            "scenes": len(rows),
            "mean_gap": dict(zip(map(str, TIMES), table.mean(axis=0).tolist(), strict=True)),
            "true_fits_better": dict(
                zip(map(str, TIMES), (table > 0).mean(axis=0).tolist(), strict=True)
            ),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", action="append", default=None, help="model folder, repeatable (the shipped)"
    )
    parser.add_argument("--suite", default="suite", help="WorldBench suite: suite or heldout")
    parser.add_argument("--n", type=int, default=32, help="scenes measured (see above)")
    parser.add_argument("--noises", type=int, default=4, help="noise draws per scene and t")
    parser.add_argument(
        "--given-frames",
        type=int,
        default=0,
        help="latent frames given clean, as the modes give them (1: image to video's frame 0)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/text_sensitivity.json")
    args = parser.parse_args()
    if args.given_frames < 0:
        parser.error(f"--given-frames must be >= 0, got {args.given_frames}")
    torch.set_num_threads(args.threads)
    entries = direction_entries(args.suite, args.n)
    start = time.perf_counter()
    models = {}
    for model in args.model or [None]:
        pipe = Pipeline.from_pretrained(model)
        models[model or "models/default"] = measure(pipe, entries, args.noises, args.given_frames)
    print(f"{'model':<28}{'edit':<12}{'scenes':>7}" + "".join(f"{f't={t}':>16}" for t in TIMES))
    for model, edits in models.items():
        for name, row in edits.items():
            cells = "".join(
                f"{row['mean_gap'][str(t)]:>+9.4f} ({row['true_fits_better'][str(t)]:.2f})"
                for t in TIMES
            )
            print(f"{model[-28:]:<28}{name:<12}{row['scenes']:>7}{cells}")
    print("cells: mean gap err_edited - err_true (share of scenes the true prompt fits better)")
    result = {
        "settings": {
            "suite": args.suite,
            "n": len(entries),
            "noises": args.noises,
            "given_frames": args.given_frames,
            "times": TIMES,
            "threads": args.threads,
        },
        "models": models,
        "seconds": time.perf_counter() - start,
    }
    write_report(args.json, result)
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
