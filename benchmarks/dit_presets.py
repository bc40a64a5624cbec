"""Step time and tokens/s of the DiT presets (forward + backward on one packed sequence).

    python benchmarks/dit_presets.py [--presets debug,tiny,small] [--tokens 1024] [--bf16]

Prints a table with parameters, analytic training FLOPs per token and the achieved GFLOP/s, and
writes JSON (default benchmarks/results/dit_presets.json). On a GPU (CUDA available) it runs
there and reports MFU against --peak-tflops.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kinema.reports import write_report
from kinema.transformer import DiT, get_preset
from kinema.transformer.dit import count_parameters, flops_per_token


def step_seconds(
    model: DiT, tokens: int, samples: int, text_len: int, bf16: bool, repeats: int, device: str
) -> float:
    config = model.config
    per = tokens // samples
    side = max(1, round((per / 4) ** 0.5))
    positions = (
        torch.stack(
            torch.meshgrid(
                torch.arange(4),
                torch.arange(side),
                torch.arange(per // (4 * side) + 1),
                indexing="ij",
            ),
            -1,
        )
        .reshape(-1, 3)[:per]
        .repeat(samples, 1)
        .to(device)
    )
    ids = torch.arange(samples, device=device).repeat_interleave(per)
    x = torch.randn(per * samples, config.in_dim, device=device)
    t = torch.rand(samples, device=device).repeat_interleave(per)  # one t per clip, as training
    text = torch.randn(samples * text_len, config.text_dim, device=device)
    text_ids = torch.arange(samples, device=device).repeat_interleave(text_len)
    times = []
    for _ in range(repeats + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            out = model(x, positions, ids, t, text, text_ids)
        out.float().square().mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="debug,tiny,small")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--samples", type=int, default=4, help="clips packed in the sequence")
    parser.add_argument("--text-len", type=int, default=16)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--peak-tflops", type=float, default=None, help="for MFU on a GPU")
    parser.add_argument("--json", default="benchmarks/results/dit_presets.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    print(f"{'preset':<8}{'params':>12}{'GFLOP/tok':>11}{'step s':>9}{'tok/s':>9}{'GFLOP/s':>9}")
    for name in args.presets.split(","):
        config = get_preset(name)
        torch.manual_seed(0)
        model = DiT(config).to(device)
        seconds = step_seconds(
            model, args.tokens, args.samples, args.text_len, args.bf16, args.repeats, device
        )
        per = args.tokens // args.samples
        flops = flops_per_token(config, per, args.text_len, training=True)
        row = {
            "preset": name,
            "parameters": count_parameters(config),
            "train_gflop_per_token": flops / 1e9,
            "step_seconds": seconds,
            "tokens_per_s": per * args.samples / seconds,
            "achieved_gflops": flops * per * args.samples / seconds / 1e9,
        }
        if args.peak_tflops:
            row["mfu"] = row["achieved_gflops"] / (args.peak_tflops * 1e3)
        rows.append(row)
        print(
            f"{name:<8}{row['parameters']:>12,}{row['train_gflop_per_token']:>11.3f}"
            f"{seconds:>9.2f}{row['tokens_per_s']:>9.0f}{row['achieved_gflops']:>9.1f}"
        )
    result = {
        "device": device,
        "tokens": args.tokens,
        "samples": args.samples,
        "bf16": args.bf16,
        "threads": args.threads,
        "rows": rows,
    }
    write_report(args.json, result)


if __name__ == "__main__":
    main()
