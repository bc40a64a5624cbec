"""AdamW's step on a DiT preset's parameters, unfused (one op per tensor group) against fused.

    python benchmarks/optimizer_step.py [--presets tiny] [--repeats 20]

The DiT trainer builds its AdamW fused where PyTorch has the kernel (CPU and CUDA;
`kinema.train.trainer.adamw`). This times one optimizer step (random gradients, PyTorch's
default betas, which the trainer's configs keep) each way, side by side in one process, medians
of `--repeats`, and checks that both give the same weights to float tolerance. Prints a table
and writes JSON (default benchmarks/results/optimizer_step.json).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kinema.reports import write_report
from kinema.transformer import DiT, get_preset

MODES = {"unfused": {"foreach": True}, "fused": {"fused": True}}


def step_ms(model: DiT, options: dict, repeats: int) -> tuple[float, list[torch.Tensor]]:
    """Median ms of an AdamW step from the same weights and gradients; the weights after one."""
    torch.manual_seed(0)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0, **options)
    optimizer.step()
    after = [p.detach().clone() for p in model.parameters()]
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - begin)
    with torch.no_grad():
        for p, s in zip(model.parameters(), start, strict=True):
            p.copy_(s)
    return 1000 * statistics.median(times), after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default="benchmarks/results/optimizer_step.json")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    rows = []
    for name in args.presets.split(","):
        model = DiT(get_preset(name))
        params = sum(p.numel() for p in model.parameters())
        ms, weights = {}, {}
        for mode, options in MODES.items():
            ms[mode], weights[mode] = step_ms(model, options, args.repeats)
        diff = max(
            float((a - b).abs().max())
            for a, b in zip(weights["unfused"], weights["fused"], strict=True)
        )
        rows.append(
            {
                "preset": name,
                "parameters": params,
                "unfused_ms": round(ms["unfused"], 2),
                "fused_ms": round(ms["fused"], 2),
                "fused_over_unfused": round(ms["fused"] / ms["unfused"], 3),
                "max_weight_difference": diff,
            }
        )
    print(
        f"{'preset':<8}{'params':>12}{'unfused ms':>12}{'fused ms':>10}{'ratio':>8}{'max diff':>10}"
    )
    for r in rows:
        print(
            f"{r['preset']:<8}{r['parameters']:>12,}{r['unfused_ms']:>12.1f}{r['fused_ms']:>10.1f}"
            f"{r['fused_over_unfused']:>8.2f}{r['max_weight_difference']:>10.1e}"
        )
    report = {"threads": torch.get_num_threads(), "device": "cpu", "rows": rows}
    write_report(args.json, report)
    print(f"report: {args.json}")


if __name__ == "__main__":
    main()
