"""Does writing the same frames to mp4 give the same file every time? x264 as detected vs AVX2.

    python benchmarks/mp4_determinism.py [--scenes 8] [--runs 15] [--sizes 64,256]

`kinema.video.write_video` caps x264 at AVX2 on CPUs with AVX-512 (`_x264_instruction_set`).
This writes each of `--scenes` rendered world clips and as many clips of noisy 8x8 blocks (33
frames of 64x64, tiled for sizes above 64) `--runs` times at each size each way, x264 with every
instruction set it detects and capped at AVX2, and counts the writes whose H.264 stream differs
from the one most writes of that clip gave (0 means reproducible), the clips with any such
write, and the median time of a write.
Prints a table and writes JSON (default benchmarks/results/mp4_determinism.json).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from kinema import video
from kinema.cpu import cpu_flags
from kinema.reports import write_report
from kinema.world import render_scene, sample_scene

SETTINGS = {"detected": {}, "avx2": {"x264-params": "asm=avx2"}}


def stream_digest(path: Path) -> str:
    """SHA-256 of the H.264 packets (the container's own bytes aside)."""
    digest = hashlib.sha256()
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            digest.update(bytes(packet))
    return digest.hexdigest()[:12]


def odd_writes(path: Path, frames: np.ndarray, runs: int, times: list[float]) -> int:
    """Writes of `frames` whose stream differs from the most common one; times appended."""
    digests: collections.Counter[str] = collections.Counter()
    for _ in range(runs):
        start = time.perf_counter()
        video.write_video(path, frames, fps=8)
        times.append(time.perf_counter() - start)
        digests[stream_digest(path)] += 1
    return runs - digests.most_common(1)[0][1]


def measure(clips: list[np.ndarray], size: int, options: dict, runs: int, path: Path) -> dict:
    """One row: every clip at `size`, written `runs` times with x264 `options`."""
    odd, times = [], []
    original = video._x264_instruction_set
    video._x264_instruction_set = lambda: dict(options)
    try:
        for clip in clips:
            frames = np.ascontiguousarray(np.tile(clip, (1, size // 64, size // 64, 1)))
            odd.append(odd_writes(path, frames, runs, times))
    finally:
        video._x264_instruction_set = original
    return {
        "writes": runs * len(clips),
        "odd_writes": sum(odd),
        "clips": len(clips),
        "clips_with_odd_writes": sum(n > 0 for n in odd),
        "write_ms": round(1000 * statistics.median(times), 2),
    }


def noisy_blocks(seed: int) -> np.ndarray:
    """(33, 64, 64, 3) uint8: 8x8 blocks drifting in colour, with +-6 levels of pixel noise."""
    rng = np.random.default_rng(seed)
    walk = rng.normal(size=(33, 8, 8, 3)).cumsum(0)  # each block's colour, a random walk
    blocks = np.kron(walk, np.ones((1, 8, 8, 1)))  # (33, 64, 64, 3)
    levels = (blocks - blocks.min()) / (blocks.max() - blocks.min()) * 255
    return np.clip(levels + rng.integers(-6, 7, levels.shape), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--sizes", default="64,256")
    parser.add_argument("--json", default="benchmarks/results/mp4_determinism.json")
    args = parser.parse_args()
    if args.runs < 2 or args.scenes < 1:
        parser.error(f"--runs must be >= 2 and --scenes >= 1, got {args.runs} and {args.scenes}")
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s < 64 or s % 64 for s in sizes):
        parser.error(f"--sizes must be multiples of 64, got {args.sizes!r}")
    contents = {
        "world": [
            render_scene(sample_scene(np.random.default_rng(seed), 64, 64, num_frames=33))
            for seed in range(args.scenes)
        ],
        "noise": [noisy_blocks(seed) for seed in range(args.scenes)],
    }  # (33, 64, 64, 3) uint8 clips
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            for content, clips in contents.items():
                for name, options in SETTINGS.items():
                    row = measure(clips, size, options, args.runs, Path(tmp) / "clip.mp4")
                    rows.append({"size": size, "content": content, "x264": name, **row})
    print(
        f"{'size':>6}  {'content':<9}{'x264':<10}{'writes':>7}{'odd writes':>12}"
        f"{'odd clips':>12}{'ms':>7}"
    )
    for r in rows:
        clips_text = f"{r['clips_with_odd_writes']} of {r['clips']}"
        print(
            f"{r['size']:>6}  {r['content']:<9}{r['x264']:<10}{r['writes']:>7}{r['odd_writes']:>12}"
            f"{clips_text:>12}{r['write_ms']:>7.1f}"
        )
    avx512 = "avx512f" in cpu_flags()
    write_report(args.json, {"cpu_has_avx512": avx512, "rows": rows})
    print(f"CPU has AVX-512: {avx512}\nreport: {args.json}")


if __name__ == "__main__":
    main()
