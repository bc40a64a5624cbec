"""How much a transformer uses its prompt: flow-matching loss by timestep, with and without text.

    python benchmarks/dit_loss_by_timestep.py --model RUN_OR_MODEL [--model ...] \
        [--cache runs/world-heldout-cache] [--noise-draws 4] [--json OUT.json]

For each model (a training run folder, whose latest checkpoint's EMA is used, or an exported
model folder) and each timestep t, noises every cached clip to t (the same noise for every model
and text) and measures the mean squared velocity error per latent element with four texts: the
clip's own prompt, its detailed caption, no text (the unconditional branch of guidance) and
another clip's prompt. `gain` is 1 - own / none: the share of the loss the prompt removes, and
`caption gain` the same for the detailed caption. A model that follows prompts has a large gain
at high t, where a clip's layout is decided. Prints a table and writes JSON
(default benchmarks/results/dit_loss_by_timestep.json).

The default cache holds the held-out world clips, encoded like the training cache, through the
VAE the transformer was trained with (an exported model folder carries it in vae/; the
dit-world-tiny runs used the VAE shipped before run 4 of docs/vae.md, not models/default/vae):

    kinema cache runs/world-heldout/manifest.jsonl --vae MODEL/vae \
        --out runs/world-heldout-cache --pixel-budget 6144 --patch 1x4x4 --bf16
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors import safe_open

from kinema.diffusion import TrainingSample, pack_batch
from kinema.hub import load_dit, read_index
from kinema.reports import write_report
from kinema.train.checkpoint import initial_weights, load_initial_weights
from kinema.train.config import load_config
from kinema.transformer import DiT

TIMESTEPS = (0.1, 0.3, 0.5, 0.7, 0.85, 0.95, 1.0)
TEXTS = ("own", "caption", "none", "other")


def load_transformer(path: Path) -> tuple[DiT, tuple[int, int, int]]:
    """The DiT of a run folder (its latest EMA) or of a model folder, and its patch."""
    if (path / "config.yaml").is_file():
        config = load_config(path / "config.yaml")
        model = DiT(config.model.dit_config())
        missing = load_initial_weights(model, initial_weights(path))
        if missing:
            raise ValueError(f"{path}: its checkpoint lacks {missing}")
        return model.eval(), tuple(config.model.patch)
    return load_dit(path / "transformer"), read_index(path).patch


def read_clips(cache: Path) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(latents, prompt tokens, caption tokens) of every clip of a `kinema cache` folder."""
    clips = []
    for line in (cache / "index.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "error" in entry:
            continue
        with safe_open(cache / entry["shard"], framework="pt") as f:
            latents = f.get_tensor(f"{entry['record']}.latents").float()
            prompt = f.get_tensor(f"{entry['record']}.prompt").float()
            caption = f.get_tensor(f"{entry['record']}.caption").float()
        clips.append((latents, prompt, caption))
    if len(clips) < 2:
        raise ValueError(f"{cache} holds {len(clips)} readable clips; at least 2 are needed")
    return clips


@torch.no_grad()
def velocity_error(
    model: DiT,
    patch: tuple[int, int, int],
    clips: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    t: float,
    text: str,
    draw: int,
) -> float:
    """Mean squared velocity error per latent element over all clips at timestep t."""
    n = len(clips)
    samples = []
    for k, (latents, prompt, caption) in enumerate(clips):
        other = clips[(k + 1) % n][1]
        tokens = {"own": prompt, "caption": caption, "none": prompt[:0], "other": other}[text]
        samples.append(TrainingSample(latents, tokens))
    batch = pack_batch(samples, patch)
    x0 = batch.packed.tokens
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(draw))
    xt = (1 - t) * x0 + t * noise
    timesteps = torch.full((x0.shape[0],), t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = model(
            xt,
            batch.packed.positions,
            batch.packed.sample_ids,
            timesteps,
            batch.text_tokens,
            batch.text_ids,
        )
    return ((v.float() - (noise - x0)) ** 2).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--cache", type=Path, default=Path("runs/world-heldout-cache"))
    parser.add_argument("--noise-draws", type=int, default=4, help="noise draws per clip and t")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/dit_loss_by_timestep.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = read_clips(args.cache)

    results = []
    print(f"{len(clips)} clips of {args.cache}, {args.noise_draws} noise draws each")
    header = f"{'model':40} {'t':>5} {'own':>7} {'caption':>7} {'none':>7} {'other':>7}"
    print(f"{header} {'gain':>6} {'caption gain':>12}")
    for path in args.model:
        model, patch = load_transformer(path)
        for t in TIMESTEPS:
            row = {"model": str(path), "t": t}
            for text in TEXTS:
                errors = [
                    velocity_error(model, patch, clips, t, text, draw)
                    for draw in range(args.noise_draws)
                ]
                row[text] = sum(errors) / len(errors)
            row["gain"] = 1 - row["own"] / row["none"]
            row["caption_gain"] = 1 - row["caption"] / row["none"]
            results.append(row)
            print(
                f"{str(path)[-40:]:40} {t:5.2f} {row['own']:7.3f} {row['caption']:7.3f} "
                f"{row['none']:7.3f} {row['other']:7.3f} {row['gain']:6.1%} "
                f"{row['caption_gain']:12.1%}",
                flush=True,
            )
    summary = {"cache": str(args.cache), "clips": len(clips), "noise_draws": args.noise_draws}
    write_report(args.json, {**summary, "rows": results})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
