"""Render throughput of the world: N clips written as mp4 with a manifest, on all cores.

    python benchmarks/world_render.py --n 10000 --json benchmarks/results/world_render.json

Prints a table and writes JSON: clips, wall seconds, clips/s, ms per clip per core, and the
time split of one core (sampling + captions, rendering, mp4 encoding) measured on a sample.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from kinema.reports import write_report
from kinema.video import write_video
from kinema.world.dataset import ClipRequest, clip_record, make_world
from kinema.world.render import render_scene


def stage_split(n: int, width: int, height: int, frames: int) -> dict[str, float]:
    """Median ms of each stage for one clip, measured serially on `n` clips."""
    times: dict[str, list[float]] = {"sample+caption": [], "render": [], "encode mp4": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            t0 = time.perf_counter()
            spec, _ = clip_record(ClipRequest(i, 12345, width, height, frames, 8.0))
            t1 = time.perf_counter()
            frames_np = render_scene(spec)
            t2 = time.perf_counter()
            write_video(Path(tmp) / "clip.mp4", frames_np, fps=8.0)
            t3 = time.perf_counter()
            times["sample+caption"].append(t1 - t0)
            times["render"].append(t2 - t1)
            times["encode mp4"].append(t3 - t2)
    return {k: 1000 * float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--json", default="benchmarks/results/world_render.json")
    args = parser.parse_args()

    split = stage_split(200, args.width, args.height, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        make_world(
            tmp,
            args.n,
            seed=0,
            sizes=[(args.width, args.height)],
            num_frames=args.frames,
            workers=args.workers,
            progress=False,
        )
        wall = time.perf_counter() - start
        mib = sum(p.stat().st_size for p in Path(tmp).glob("*.mp4")) / 2**20
    result = {
        "clips": args.n,
        "size": f"{args.width}x{args.height}x{args.frames}",
        "workers": args.workers,
        "wall_s": round(wall, 1),
        "clips_per_s": round(args.n / wall, 1),
        "ms_per_clip_per_core": round(1000 * wall * args.workers / args.n, 1),
        "dataset_mib": round(mib, 1),
        "median_ms_per_stage_one_core": {k: round(v, 2) for k, v in split.items()},
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    print(f"{'clips':>8} {'size':>10} {'workers':>8} {'wall s':>8} {'clips/s':>8} {'MiB':>7}")
    print(
        f"{args.n:>8} {result['size']:>10} {args.workers:>8} {result['wall_s']:>8} "
        f"{result['clips_per_s']:>8} {result['dataset_mib']:>7}"
    )
    for stage, ms in result["median_ms_per_stage_one_core"].items():
        print(f"  {stage:<16} {ms:7.2f} ms/clip (median, one core)")
    write_report(args.json, result)


if __name__ == "__main__":
    main()
