"""The VAE's causal convolutions on the CPU: PyTorch's conv3d alone against Kinema's routing.

    python benchmarks/vae_conv.py [--presets tiny-s4,tiny] [--frames 17] [--size 64]

On the CPU, PyTorch runs a conv3d of one small clip through an im2col kernel (slow_conv3d);
`CausalConv3d` hands those over as a batch of two halves (`conv3d_split_rows`), which oneDNN runs.
For one random clip of FRAMES x SIZE x SIZE this times, side by side in one run, a training
step (encode_distribution, a reparameterized sample, decode_raw, a mean squared error and its
backward, as `benchmarks/vae_train_step.py`), an encode and a decode, each with every causal
convolution run both ways; medians of --repeats after a warm-up, alternating the two routes.
Prints a table with the speed-up and writes JSON (default benchmarks/results/vae_conv.json).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import Tensor

from kinema.compression.layers import CausalConv3d
from kinema.compression.vae import CausalVAE
from kinema.reports import write_report
from vae_train_step import clip_arguments, presets_and_clip


@contextmanager
def conv3d_everywhere():
    """Every CausalConv3d calls PyTorch's conv3d, whatever the input size (the old route)."""
    routed = CausalConv3d._convolve
    CausalConv3d._convolve = lambda self, window: self.conv(window)
    try:
        yield
    finally:
        CausalConv3d._convolve = routed


def work(vae: CausalVAE, clip: Tensor) -> dict[str, Callable[[], None]]:
    latents = vae.encode_distribution(clip)[0].detach()

    def train_step() -> None:
        mean, logvar = vae.encode_distribution(clip)
        z = mean + torch.randn(mean.shape) * (0.5 * logvar).exp()
        (vae.decode_raw(z) - clip).square().mean().backward()
        vae.zero_grad(set_to_none=True)

    def encode() -> None:
        with torch.no_grad():
            vae.encode_distribution(clip)

    def decode() -> None:
        with torch.no_grad():
            vae.decode_raw(latents)

    return {"train step": train_step, "encode": encode, "decode": decode}


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    args = clip_arguments(__doc__.split("\n")[0], 5, "benchmarks/results/vae_conv.json")
    rows = []
    for name, vae, clip in presets_and_clip(args):
        for task, fn in work(vae, clip).items():
            times: dict[str, list[float]] = {"conv3d": [], "split_rows": []}
            for i in range(args.repeats + 1):  # the first round warms both routes up
                with conv3d_everywhere():
                    conv3d = timed(fn)
                split_rows = timed(fn)
                if i:
                    times["conv3d"].append(conv3d)
                    times["split_rows"].append(split_rows)
            old, new = statistics.median(times["conv3d"]), statistics.median(times["split_rows"])
            rows.append(
                {
                    "preset": name,
                    "work": task,
                    "conv3d_s": old,
                    "split_rows_s": new,
                    "speedup": old / new,
                }
            )
    report = {
        "device": "cpu",
        "threads": args.threads,
        "clip": [args.frames, args.size, args.size],
        "repeats": args.repeats,
        "rows": rows,
    }
    print(f"{'preset':<10}{'work':<12}{'conv3d s':>10}{'split rows s':>14}{'speed-up':>10}")
    for r in rows:
        print(
            f"{r['preset']:<10}{r['work']:<12}{r['conv3d_s']:>10.3f}{r['split_rows_s']:>14.3f}"
            f"{r['speedup']:>9.2f}×"
        )
    print(f"report: {write_report(args.json, report)}")


if __name__ == "__main__":
    main()
