"""End-to-end generation time of the default clip: prompt -> mp4, on this machine.

    python benchmarks/generate_e2e.py [--model DIR] [--repeats 5]

Two measurements, medians over `--repeats` runs:
- "cli, cold": the whole `kinema generate PROMPT -o OUT.mp4` command in a fresh process (Python
  start, imports, loading and hash-checking the model, the text encoder, sampling, decoding,
  writing the mp4): what a user waits for.
- "pipeline, warm": one call of a loaded `Pipeline` plus writing the mp4 (text encoding, sampling
  and decoding included), with its own timings split by stage.
Prints a table and writes JSON (default benchmarks/results/generate_e2e.json).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from kinema.pipeline import Pipeline
from kinema.reports import write_report
from kinema.video import write_video

DEFAULT_PROMPT = "a red ball bounces on a blue floor"


def time_cli(prompt: str, model: str | None, repeats: int, out_dir: Path) -> list[float]:
    times = []
    for i in range(repeats):
        cmd = [
            sys.executable,
            "-m",
            "kinema.cli",
            "generate",
            prompt,
            "-o",
            str(out_dir / f"cli{i}.mp4"),
        ]
        cmd += ["--seed", str(i)] + (["--model", model] if model else [])
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def time_pipeline(prompt: str, model: str | None, repeats: int, out_dir: Path) -> dict:
    start = time.perf_counter()
    pipe = Pipeline.from_pretrained(model)
    load_s = time.perf_counter() - start
    totals, stages = [], []
    for i in range(repeats + 1):  # the first call warms up
        start = time.perf_counter()
        out = pipe(prompt, seed=i)
        write_video(out_dir / f"warm{i}.mp4", out.frames, fps=out.fps)
        if i:
            totals.append(time.perf_counter() - start)
            stages.append(out.timings)
    shape = out.frames.shape
    return {
        "load_s": load_s,
        "times_s": totals,
        "median_s": statistics.median(totals),
        "stages_median_s": {k: statistics.median(s[k] for s in stages) for k in stages[0]},
        "clip": {"frames": shape[0], "height": shape[1], "width": shape[2], "fps": out.fps},
        "settings": out.settings.to_dict(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/generate_e2e.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        warm = time_pipeline(args.prompt, args.model, args.repeats, Path(tmp))
        cold = time_cli(args.prompt, args.model, args.repeats, Path(tmp))
    result = {
        "prompt": args.prompt,
        "model": args.model or "models/default",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
        },
        "cli_cold": {"times_s": cold, "median_s": statistics.median(cold)},
        "pipeline_warm": warm,
    }
    clip = warm["clip"]
    size = f"{clip['width']}x{clip['height']}"
    print(f"default clip: {size}, {clip['frames']} frames at {clip['fps']} fps")
    print(f"{'measurement':<28}{'median s':>10}")
    print(f"{'cli, cold (prompt -> mp4)':<28}{result['cli_cold']['median_s']:>10.2f}")
    print(f"{'pipeline, warm':<28}{warm['median_s']:>10.2f}")
    for stage, seconds in warm["stages_median_s"].items():
        print(f"{'  ' + stage:<28}{seconds:>10.2f}")
    write_report(args.json, result)
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
