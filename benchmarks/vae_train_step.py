"""Time of one VAE training step's forward + backward, in float32 and under bf16 autocast.

    python benchmarks/vae_train_step.py [--presets tiny-s4,tiny] [--frames 17] [--size 64]

One random clip of FRAMES x SIZE x SIZE through encode_distribution, a reparameterized sample,
decode_raw and a mean squared error, as `kinema vae train` computes it per clip (without its
SSIM, chroma and KL terms); median of --repeats after a warm-up. Prints a table with the
bf16 / float32 ratio and whether `bf16: auto` would choose bf16 on this CPU
(`kinema.precision`), and writes JSON (default benchmarks/results/vae_train_step.json).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import torch

from kinema.compression.vae import PRESETS, CausalVAE
from kinema.precision import native_bf16
from kinema.reports import write_report


def step_seconds(vae: CausalVAE, clip: torch.Tensor, bf16: bool, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            mean, logvar = vae.encode_distribution(clip)
            z = mean.float() + torch.randn(mean.shape) * (0.5 * logvar.float()).exp()
            recon = vae.decode_raw(z).float()
        (recon - clip).square().mean().backward()
        vae.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def clip_arguments(description: str, repeats: int, json: str) -> argparse.Namespace:
    """The arguments every one-clip VAE benchmark takes (this one and vae_conv.py)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--presets", default="tiny-s4,tiny", help="VAE presets, comma separated")
    p.add_argument("--frames", type=int, default=17, help="frames of the clip (1 + 4k)")
    p.add_argument("--size", type=int, default=64, help="height and width of the clip")
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=json)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    return args


def presets_and_clip(args: argparse.Namespace) -> Iterator[tuple[str, CausalVAE, torch.Tensor]]:
    """A random clip of the arguments' size, and each preset's VAE with random weights."""
    torch.manual_seed(0)
    clip = torch.rand(1, 3, args.frames, args.size, args.size) * 2 - 1
    for name in args.presets.split(","):
        if name not in PRESETS:
            raise SystemExit(f"unknown VAE preset {name!r}; valid: {sorted(PRESETS)}")
        yield name, CausalVAE(PRESETS[name]), clip


def main() -> None:
    args = clip_arguments(__doc__.split("\n")[0], 3, "benchmarks/results/vae_train_step.json")
    rows = []
    for name, vae, clip in presets_and_clip(args):
        fp32 = step_seconds(vae, clip, False, args.repeats)
        bf16 = step_seconds(vae, clip, True, args.repeats)
        rows.append({"preset": name, "fp32_s": fp32, "bf16_s": bf16, "bf16_over_fp32": bf16 / fp32})
    report = {
        "device": "cpu",
        "threads": args.threads,
        "clip": [args.frames, args.size, args.size],
        "repeats": args.repeats,
        "native_bf16": native_bf16("cpu"),  # what `bf16: auto` chooses here
        "rows": rows,
    }
    print(f"{'preset':<10}{'fp32 s':>10}{'bf16 s':>10}{'bf16/fp32':>11}")
    for r in rows:
        print(
            f"{r['preset']:<10}{r['fp32_s']:>10.2f}{r['bf16_s']:>10.2f}{r['bf16_over_fp32']:>11.2f}"
        )
    print(f"bf16 native on this CPU (bf16: auto chooses it): {report['native_bf16']}")
    print(f"report: {write_report(args.json, report)}")


if __name__ == "__main__":
    main()
