"""Attention on the CPU in bf16: SDPA's flash kernel against explicit float32 products.

    python benchmarks/attention_cpu.py [--repeats 20] [--steps 5] [--rounds 4]

The DiT trains under bf16 autocast on CPUs that compute bf16 natively, and its attention runs
over short sequences: a 64x64 world clip is 144 tokens, 96x64 is 216, a prompt tens of tokens.
`kinema.transformer.layers.batched_attention` sends such inputs through `explicit_attention`
(scores, softmax and products in float32) instead of `F.scaled_dot_product_attention`. This
measures both, side by side in one process:

1. the kernels alone, forward + backward on random bf16 inputs at the DiT's shapes and longer
   ones (medians of `--repeats`), with each one's rms error against a float64 reference;
2. a training step of the tiny DiT (forward + backward under bf16 autocast, random weights, the
   zero-initialised gates and output drawn small so every block computes) on a
   packed sequence of world clips, 8 of 64x64 and 4 of 96x64 (2,016 tokens) with prompts of
   12-30 tokens, alternating the two paths for `--rounds` rounds of `--steps` steps (medians).

Prints both tables and writes JSON (default benchmarks/results/attention_cpu.json).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kinema.reports import write_report
from kinema.transformer import DiT, get_preset, layers

# (name, samples G, query length n, key length m): the DiT's groups, then longer sequences
SHAPES = [
    ("self, 8 clips of 64x64", 8, 144, 144),
    ("self, 4 clips of 96x64", 4, 216, 216),
    ("cross, 12 clips to 24 text tokens", 12, 144, 24),
    ("self, 1 clip of 576 tokens", 1, 576, 576),
    ("self, 1 clip of 1,024 tokens", 1, 1024, 1024),
]
HEADS, HEAD_DIM = 6, 64  # the tiny preset's


def kernel_ms(
    fn: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, repeats: int
) -> float:
    """Median ms of fn's forward + backward."""
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        fn(q, k, v).float().sum().backward()
        if i >= 2:  # two warm-up calls
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def kernel_rows(repeats: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name, g, n, m in SHAPES:
        # q and k of unit rms per channel, as QK-norm leaves them
        q, k, v = (
            torch.randn(g, HEADS, length, HEAD_DIM, generator=generator)
            .to(torch.bfloat16)
            .requires_grad_()
            for length in (n, m, m)
        )
        reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
        row: dict = {"shape": name, "samples": g, "q_len": n, "k_len": m}
        for label, fn in (
            ("sdpa", F.scaled_dot_product_attention),
            ("explicit", layers.explicit_attention),
        ):
            with torch.no_grad():
                error = (fn(q, k, v).double() - reference).square().mean().sqrt()
            row[f"{label}_ms"] = round(kernel_ms(fn, q, k, v, repeats), 3)
            row[f"{label}_rms_error"] = float(error)
        row["explicit_over_sdpa"] = round(row["explicit_ms"] / row["sdpa_ms"], 3)
        row["default"] = "explicit" if n * m <= layers.EXPLICIT_ATTENTION_MAX_SCORES else "sdpa"
        rows.append(row)
    return rows


def world_batch(model: DiT) -> tuple[torch.Tensor, ...]:
    """A packed training sequence of 8 clips of 64x64 and 4 of 96x64 (33 frames), with text."""
    generator = torch.Generator().manual_seed(1)
    positions, ids, text_ids, times = [], [], [], []
    for sample, (h, w) in enumerate([(4, 4)] * 8 + [(4, 6)] * 4):  # latent tokens per frame
        grid = torch.stack(
            torch.meshgrid(torch.arange(9), torch.arange(h), torch.arange(w), indexing="ij"), -1
        ).reshape(-1, 3)  # (9 * h * w, 3)
        positions.append(grid)
        ids.append(torch.full((len(grid),), sample))
        times.append(torch.rand(1, generator=generator).expand(len(grid)))
        text_ids.append(
            torch.full((int(torch.randint(12, 31, (1,), generator=generator)),), sample)
        )
    config = model.config
    tokens = torch.randn(sum(len(p) for p in positions), config.in_dim, generator=generator)
    text_ids_all = torch.cat(text_ids)
    text = torch.randn(len(text_ids_all), config.text_dim, generator=generator)
    return tokens, torch.cat(positions), torch.cat(ids), torch.cat(times), text, text_ids_all


def step_rows(repeats: int, rounds: int) -> list[dict]:
    torch.manual_seed(0)
    model = DiT(get_preset("tiny"))
    with torch.no_grad():  # a trained model's gates are not zero: let every block contribute
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.02)
    inputs = world_batch(model)
    target = torch.randn(len(inputs[0]), model.config.in_dim)  # a velocity to regress
    default_limit = layers.EXPLICIT_ATTENTION_MAX_SCORES
    limits = {"sdpa": 0, "explicit": default_limit}  # 0: no group is short enough
    times: dict[str, list[float]] = {name: [] for name in limits}
    losses: dict[str, float] = {}
    try:
        for _ in range(rounds):
            for name, limit in limits.items():
                layers.EXPLICIT_ATTENTION_MAX_SCORES = limit
                for i in range(repeats + 1):
                    model.zero_grad(set_to_none=True)
                    start = time.perf_counter()
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        out = model(*inputs)
                    loss = (out.float() - target).square().mean()
                    loss.backward()
                    if i:  # one warm-up step per round
                        times[name].append(time.perf_counter() - start)
                losses[name] = float(loss.detach())
    finally:
        layers.EXPLICIT_ATTENTION_MAX_SCORES = default_limit
    sdpa = statistics.median(times["sdpa"])
    return [
        {
            "attention": name,
            "tokens": len(inputs[0]),
            "step_s": round(statistics.median(t), 4),
            "over_sdpa": round(statistics.median(t) / sdpa, 3),
            "loss": losses[name],
        }
        for name, t in times.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/attention_cpu.json")
    args = parser.parse_args()
    for name in ("repeats", "steps", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)

    kernels = kernel_rows(args.repeats)
    print(
        f"{'shape':<36}{'sdpa ms':>9}{'explicit ms':>13}{'ratio':>7}"
        f"{'sdpa err':>10}{'expl err':>10}  default"
    )
    for r in kernels:
        print(
            f"{r['shape']:<36}{r['sdpa_ms']:>9.2f}{r['explicit_ms']:>13.2f}"
            f"{r['explicit_over_sdpa']:>7.2f}{r['sdpa_rms_error']:>10.1e}"
            f"{r['explicit_rms_error']:>10.1e}  {r['default']}"
        )
    steps = step_rows(args.steps, args.rounds)
    print(
        f"\n{'tiny DiT step, bf16 autocast':<30}{'tokens':>8}{'step s':>9}{'ratio':>7}{'loss':>12}"
    )
    for r in steps:
        print(
            f"{r['attention']:<30}{r['tokens']:>8}{r['step_s']:>9.3f}{r['over_sdpa']:>7.2f}"
            f"{r['loss']:>12.7f}"
        )
    report = {
        "threads": args.threads,
        "device": "cpu",
        "explicit_attention_max_scores": layers.EXPLICIT_ATTENTION_MAX_SCORES,
        "kernels": kernels,
        "steps": steps,
    }
    write_report(args.json, report)
    print(f"report: {args.json}")


if __name__ == "__main__":
    main()
