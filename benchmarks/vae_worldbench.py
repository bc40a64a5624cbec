"""WorldBench through the VAE: how much of what a prompt asks for survives encode -> decode.

    python benchmarks/vae_worldbench.py [--model DIR] [--manifest M] [--n 24]

Renders held-out world clips (or reads a manifest), reconstructs each with the VAE (whole clip,
posterior mean), writes the reconstructions as mp4 and scores originals and reconstructions with
WorldBench side by side, with each side's palette share (kinema.world.look). A text-to-video
model decoding through this VAE cannot score higher than its reconstructions do. Prints a table
and writes JSON (default benchmarks/results/vae_worldbench.json).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from kinema.compression.evaluate import load_vae
from kinema.reports import write_report
from kinema.video import read_video, write_video
from kinema.world.dataset import make_world, read_manifest
from kinema.world.evaluate import evaluate_manifest


@torch.no_grad()
def reconstruct(vae, records: list[dict], out_dir: Path) -> list[dict]:
    out = []
    for record in records:
        frames = read_video(record["path"]).frames  # (T, H, W, 3) uint8
        video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        decoded = vae.decode(vae.encode(video), num_frames=video.shape[2])  # (1, 3, T, H, W)
        pixels = ((decoded[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 3, 0)
        path = out_dir / Path(record["path"]).name
        write_video(path, pixels.numpy(), fps=record["fps"])
        out.append({**record, "path": str(path)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="VAE folder (default: the shipped one)")
    parser.add_argument("--manifest", default=None, help="world manifest (default: render --n)")
    parser.add_argument("--n", type=int, default=24, help="clips to render without --manifest")
    parser.add_argument("--seed", type=int, default=777, help="seed of the rendered clips")
    parser.add_argument("--json", default="benchmarks/results/vae_worldbench.json")
    args = parser.parse_args()
    vae = load_vae(args.model).eval()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest or make_world(
            Path(tmp) / "world", args.n, args.seed, ((64, 64), (96, 64), (64, 96)), progress=False
        )
        records = read_manifest(manifest)
        (Path(tmp) / "recon").mkdir()
        recon = reconstruct(vae, records, Path(tmp) / "recon")
        truth = evaluate_manifest(records, workers=1, progress=False)
        through = evaluate_manifest(recon, workers=1, progress=False)
    result = {
        "model": args.model or "models/default/vae",
        "n": truth["n"],
        **{
            name: {k: report[k] for k in ("overall", "categories", "palette_share")}
            for name, report in (("original", truth), ("reconstructed", through))
        },
    }
    print(f"WorldBench on {truth['n']} world clips, original vs through the VAE")
    print(f"{'category':<12}{'original':>10}{'VAE':>8}")
    for name in ["overall", *truth["categories"]]:
        a = truth["overall"] if name == "overall" else truth["categories"][name]
        b = through["overall"] if name == "overall" else through["categories"][name]
        print(f"{name:<12}{a:>10.3f}{b:>8.3f}")
    print(f"{'palette':<12}{truth['palette_share']:>10.3f}{through['palette_share']:>8.3f}")
    write_report(args.json, result)
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
