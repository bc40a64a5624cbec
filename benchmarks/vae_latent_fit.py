"""The decoder's ceiling: how well it reconstructs a clip when its latents are fitted to the clip.

    python benchmarks/vae_latent_fit.py [--model DIR] [--n 24] [--clips 9] [--steps 100]

For each held-out world clip (rendered as `kinema vae eval`'s world figures are: `--seed 777`,
64x64, 96x64 and 64x96, 33 frames, at their native 64 px), the clip is encoded (posterior mean)
and decoded as `kinema vae eval` does, then the latents alone are fitted to the clip through the
frozen decoder (`kinema.compression.refine.refine_latents`: Adam on the pixel MSE, `--steps`
steps, every latent frame) and decoded again. Both PSNRs are measured on 8-bit frames. The gap
between them is what a better encoder could still win with this decoder; what is left below the
fitted figure is the decoder's.

The clips are H.264 files, so two more columns say what the coding costs: the PSNR of each file
against its scene rendered losslessly, and the encoder's PSNR on that lossless render. Prints a
table and writes JSON (default benchmarks/results/vae_latent_fit.json).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kinema.compression.evaluate import load_vae, prepare_frames
from kinema.compression.losses import psnr
from kinema.compression.pixels import quantize
from kinema.compression.refine import DEFAULT_REFINE_LR, refine_latents
from kinema.compression.vae import CausalVAE
from kinema.pipeline import to_video_tensor
from kinema.reports import write_report
from kinema.video import read_video
from kinema.world.dataset import make_world, read_manifest
from kinema.world.render import render_scene
from kinema.world.spec import SceneSpec

SIZES = ((64, 64), (96, 64), (64, 96))  # (W, H) as `kinema world make --sizes` writes them
MAX_FRAMES = 33  # `kinema vae eval`'s default


def measure_clip(
    vae: CausalVAE, frames: np.ndarray, rendered: np.ndarray, steps: int, lr: float
) -> dict:
    """PSNRs of one clip: `frames` read from its file, `rendered` its lossless render."""
    sc, tc = vae.config.space_compression, vae.config.time_compression
    video = to_video_tensor(prepare_frames(frames[:MAX_FRAMES], 64, sc, tc))  # (1, 3, T, H, W)
    lossless = to_video_tensor(prepare_frames(rendered[:MAX_FRAMES], 64, sc, tc))  # (1, 3, T, H, W)
    with torch.no_grad():
        encoded = vae.encode(video)  # (1, C, t, h, w)
    every_frame = torch.ones(video.shape[2], dtype=torch.bool)
    every_latent = torch.ones(encoded.shape[2], dtype=torch.bool)
    fitted = refine_latents(vae, encoded, video, every_frame, every_latent, steps, lr)
    with torch.no_grad():
        encoder_psnr = float(psnr(quantize(vae.decode(encoded)), video))
        fitted_psnr = float(psnr(quantize(vae.decode(fitted)), video))
        render_psnr = float(psnr(quantize(vae.decode(vae.encode(lossless))), lossless))
    return {
        "frames": video.shape[2],
        "height": video.shape[3],
        "width": video.shape[4],
        "encoder_psnr": encoder_psnr,
        "fitted_psnr": fitted_psnr,
        # root-mean-square change of the normalized latents (they have about unit variance)
        "latent_rms_change": float((fitted - encoded).square().mean().sqrt()),
        "file_vs_render_psnr": float(psnr(video, lossless)),
        "encoder_psnr_on_render": render_psnr,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="VAE folder (default: the shipped one)")
    parser.add_argument("--n", type=int, default=24, help="held-out clips rendered")
    parser.add_argument("--clips", type=int, default=None, help="fit only the first N (all)")
    parser.add_argument("--seed", type=int, default=777, help="seed of the rendered clips")
    parser.add_argument("--steps", type=int, default=100, help="Adam steps per clip")
    parser.add_argument("--lr", type=float, default=DEFAULT_REFINE_LR, help="Adam step size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/vae_latent_fit.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vae = load_vae(args.model).eval().requires_grad_(False)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_world(Path(tmp) / "world", args.n, args.seed, SIZES, progress=False)
        records = read_manifest(manifest)[: args.clips]
        clips = []
        for record in tqdm(records, desc="fitting latents", unit="clip"):
            frames = read_video(record["path"], max_frames=MAX_FRAMES).frames
            rendered = render_scene(SceneSpec.from_dict(record["spec"]))
            clips.append(
                {
                    "name": Path(record["path"]).name,
                    **measure_clip(vae, frames, rendered, args.steps, args.lr),
                }
            )
    keys = (
        "encoder_psnr",
        "fitted_psnr",
        "latent_rms_change",
        "file_vs_render_psnr",
        "encoder_psnr_on_render",
    )
    mean = {k: float(np.mean([c[k] for c in clips])) for k in keys}
    result = {
        "model": args.model or "models/default/vae",
        "settings": {
            "n": args.n,
            "clips": len(clips),
            "seed": args.seed,
            "steps": args.steps,
            "lr": args.lr,
            "threads": args.threads,
        },
        "clips": clips,
        "mean": mean,
        "seconds": time.perf_counter() - start,
    }
    print(
        f"{'clip':<18}{'size':>8}{'encoder dB':>12}{'fitted dB':>11}{'latent rms':>12}"
        f"{'file vs render dB':>19}{'encoder on render dB':>22}"
    )
    for name, size, row in [
        *((c["name"], f"{c['width']}x{c['height']}", c) for c in clips),
        ("mean", "", mean),
    ]:
        print(
            f"{name:<18}{size:>8}{row['encoder_psnr']:>12.2f}{row['fitted_psnr']:>11.2f}"
            f"{row['latent_rms_change']:>12.3f}{row['file_vs_render_psnr']:>19.2f}"
            f"{row['encoder_psnr_on_render']:>22.2f}"
        )
    write_report(args.json, result)
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
