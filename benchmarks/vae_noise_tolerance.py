"""How forgiving is a VAE's decoder of errors in its latents, as a transformer makes them?

    python benchmarks/vae_noise_tolerance.py --model DIR [--model DIR ...] [--n 6] [--frames 17]

Renders held-out world clips, encodes each (posterior mean, normalized latents), adds Gaussian
noise of each std in --stds (normalized units: the transformer's units) and decodes. Reports the
reconstruction PSNR at each std, side by side for every VAE given, and how alike neighbouring
latent pixels are (the correlation of horizontally adjacent normalized latents). A decoder that
loses many dB to small noise turns a transformer's small errors into visible texture. Prints a
table and writes JSON (default benchmarks/results/vae_noise_tolerance.json).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from kinema.compression.evaluate import load_vae
from kinema.compression.losses import psnr
from kinema.reports import write_report
from kinema.video import read_video
from kinema.world.dataset import make_world, read_manifest


def read_clips(n: int, frames: int, seed: int) -> list[torch.Tensor]:
    """n held-out world clips, each (1, 3, frames, H, W) in [-1, 1]."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_world(
            Path(tmp) / "world", n, seed, ((64, 64), (96, 64), (64, 96)), progress=False
        )
        clips = []
        for record in read_manifest(manifest):
            pixels = read_video(record["path"]).frames[:frames]  # (T, H, W, 3) uint8
            clips.append(torch.from_numpy(pixels).permute(3, 0, 1, 2)[None].float() / 127.5 - 1)
    return clips


@torch.no_grad()
def measure(vae, clips: list[torch.Tensor], stds: list[float], seed: int) -> dict:
    by_std = {std: [] for std in stds}
    correlations = []
    for i, clip in enumerate(clips):
        z = vae.encode(clip)  # (1, C, t, h, w), normalized posterior mean
        pairs = torch.stack([z[..., :-1].flatten(), z[..., 1:].flatten()])
        correlations.append(float(torch.corrcoef(pairs)[0, 1]))
        for std in stds:
            noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed + i))
            decoded = vae.decode(z + std * noise, num_frames=clip.shape[2]).clamp(-1, 1)
            by_std[std].append(float(psnr(decoded, clip)))
    return {
        "psnr_db": {str(std): sum(v) / len(v) for std, v in by_std.items()},
        "neighbour_correlation": sum(correlations) / len(correlations),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="VAE folder; repeat to compare")
    parser.add_argument("--n", type=int, default=6, help="held-out world clips to render")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip (1 + 4k)")
    parser.add_argument("--stds", default="0,0.1,0.2,0.4", help="noise stds, comma-separated")
    parser.add_argument("--seed", type=int, default=777, help="seed of the clips and the noise")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/vae_noise_tolerance.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stds = [float(s) for s in args.stds.split(",")]
    clips = read_clips(args.n, args.frames, args.seed)
    models = args.model or [None]
    results = {}
    for model in models:
        name = model or "models/default/vae"
        results[name] = measure(load_vae(model).eval(), clips, stds, args.seed)
    width = max(len(name) for name in results) + 2
    header = "".join(f"{'std ' + str(s):>10}" for s in stds)
    print(f"PSNR (dB) of {len(clips)} world clips decoded from noised latents")
    print(f"{'VAE':<{width}}{header}{'neighbour corr':>16}")
    for name, r in results.items():
        row = "".join(f"{r['psnr_db'][str(s)]:>10.2f}" for s in stds)
        print(f"{name:<{width}}{row}{r['neighbour_correlation']:>16.3f}")
    write_report(
        args.json,
        {"n": len(clips), "frames": args.frames, "stds": stds, "seed": args.seed, "vaes": results},
    )
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
