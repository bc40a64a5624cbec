"""How well WorldBench can follow the background of clips whose camera moves.

    python benchmarks/worldbench_camera_trust.py FOLDER [FOLDER ...] [--vae DIR] [--limit N]

Each FOLDER holds clips and their `manifest.jsonl` with specs: a `kinema bench world --out`
folder of generated clips, or a `kinema world make` folder of rendered ones. For every clip whose
spec pans or zooms the camera, WorldBench's analysis (`kinema.world.bench.analyze_video`) aligns
the background of frames 4 apart; the camera check trusts the path only when every pair's
normalized cross-correlation (NCC) is at least `MIN_CAMERA_CONFIDENCE` (0.5), and otherwise fails
it as "background not trackable". The table gives each folder's mean NCC per pair of key frames
(frames 0→4, 4→8, ...), the mean of each clip's worst pair and the share of clips trusted.

With `--vae DIR`, the clips are first encoded and decoded by that VAE (whole clip, posterior
mean), which says whether a VAE keeps a moving background trackable, apart from any transformer.
Prints a table and writes JSON (default benchmarks/results/worldbench_camera_trust.json.gz).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from kinema.compression.pixels import to_frames, to_video_tensor
from kinema.compression.vae import CausalVAE
from kinema.reports import write_report
from kinema.video import read_video
from kinema.world.bench import MIN_CAMERA_CONFIDENCE, analyze_video
from kinema.world.dataset import read_manifest
from kinema.world.spec import Camera, SceneSpec


def moving_camera_clips(folder: Path, limit: int | None) -> list[tuple[Path, Camera]]:
    """(clip path, camera) of the folder's clips whose spec moves the camera, in manifest order."""
    clips = []
    for record in read_manifest(folder / "manifest.jsonl"):  # paths made absolute
        camera = SceneSpec.from_dict(record["spec"]).camera
        if camera is not Camera.STATIC:
            clips.append((Path(record["path"]), camera))
    return clips[:limit]


@torch.inference_mode()
def round_trip(vae: CausalVAE, frames: np.ndarray) -> np.ndarray:
    """uint8 frames (T, H, W, 3) encoded and decoded by `vae`, trimmed to 1 + k·time_compression."""
    tc = vae.config.time_compression
    frames = frames[: 1 + (len(frames) - 1) // tc * tc]
    return to_frames(vae.decode(vae.encode(to_video_tensor(frames))))


def measure(folder: Path, vae: CausalVAE | None, limit: int | None) -> dict:
    rows = []
    for path, camera in moving_camera_clips(folder, limit):
        frames = read_video(path).frames
        if vae is not None:
            frames = round_trip(vae, frames)
        ncc = analyze_video(frames).camera.pair_ncc
        rows.append({"clip": path.name, "camera": camera.value, "pair_ncc": ncc.tolist()})
    if not rows:
        raise ValueError(f"{folder} has no clip whose camera moves")
    pairs = min(len(r["pair_ncc"]) for r in rows)
    ncc = np.array([r["pair_ncc"][:pairs] for r in rows])  # (clips, pairs)
    worst = np.array([min(r["pair_ncc"]) for r in rows])
    return {
        "folder": str(folder),
        "clips": len(rows),
        "mean_ncc_by_pair": ncc.mean(0).round(4).tolist(),
        "mean_worst_ncc": round(float(worst.mean()), 4),
        "trusted": round(float((worst >= MIN_CAMERA_CONFIDENCE).mean()), 4),
        "per_clip": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--vae", type=Path, default=None, help="round-trip the clips first")
    parser.add_argument("--limit", type=int, default=None, help="first N moving-camera clips")
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/worldbench_camera_trust.json.gz")
    )
    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    vae = CausalVAE.from_pretrained(args.vae).eval() if args.vae is not None else None
    results = [measure(folder, vae, args.limit) for folder in args.folders]
    print(f"{'folder':<40}{'clips':>6}{'worst':>7}{'trusted':>8}  mean NCC per pair")
    for r in results:
        pairs = " ".join(f"{v:.2f}" for v in r["mean_ncc_by_pair"])
        print(
            f"{r['folder'][-40:]:<40}{r['clips']:>6}{r['mean_worst_ncc']:>7.3f}"
            f"{r['trusted']:>8.3f}  {pairs}"
        )
    report = {"vae": None if args.vae is None else str(args.vae), "folders": results}
    write_report(args.json, report)
    print(f"report: {args.json}")


if __name__ == "__main__":
    main()
