"""Patch n' Pack vs padding: training throughput of the DiT on a mixed batch, side by side.

    python benchmarks/packing.py [--preset tiny] [--repeats 3]

The batch mixes images, short and long clips at three aspect ratios (latent grids after 4x8x8
VAE compression and 1x2x2 patches). "packed" puts all samples in one sequence (attention stays
inside each sample); "padded" pads every sample to the longest one, as a batch with a padding mask
would. Both run forward + backward of the same model; throughput counts real tokens only. Prints a
table and writes JSON (default benchmarks/results/packing.json).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kinema.patches import pack_sequences, patchify
from kinema.reports import write_report
from kinema.transformer import DiT, get_preset

PATCH = (1, 2, 2)
# (latent frames, latent height, latent width): images, short and long clips; square, wide, tall
MIX = [(1, 8, 8), (1, 8, 12), (1, 12, 8), (3, 8, 8), (3, 8, 12), (5, 12, 8), (9, 8, 8), (9, 8, 12)]


def make_items(channels: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [patchify(torch.randn(channels, *grid, generator=generator), PATCH) for grid in MIX]


def run(model: DiT, packed, text_dim: int, repeats: int) -> float:
    """Median seconds of forward + backward."""
    N = packed.tokens.shape[0]
    text = torch.randn(len(packed.lengths) * 8, text_dim)
    text_ids = torch.arange(len(packed.lengths)).repeat_interleave(8)
    t = torch.rand(N)
    times = []
    for _ in range(repeats + 1):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = model(packed.tokens, packed.positions, packed.sample_ids, t, text, text_ids)
        out[packed.sample_ids >= 0].square().mean().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])  # the first run warms up


def pad_to_longest(items: list[tuple[torch.Tensor, torch.Tensor]]):
    """A packed sequence in which every sample is padded to the longest: the padded batch."""
    longest = max(len(t) for t, _ in items)
    tokens, positions, ids = [], [], []
    for i, (tok, pos) in enumerate(items):
        pad = longest - len(tok)
        tokens += [tok, torch.zeros(pad, tok.shape[1])]
        positions += [pos, torch.zeros(pad, 3, dtype=torch.long)]
        ids += [torch.full((len(tok),), i), torch.full((pad,), -1)]
    packed = pack_sequences(items)
    packed.tokens, packed.positions = torch.cat(tokens), torch.cat(positions)
    packed.sample_ids = torch.cat(ids).long()
    return packed, longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="benchmarks/results/packing.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = get_preset(args.preset)
    model = DiT(config)
    items = make_items(config.in_dim // (PATCH[0] * PATCH[1] * PATCH[2]))
    real = sum(len(t) for t, _ in items)
    packed = pack_sequences(items)
    padded, longest = pad_to_longest(items)
    rows = {}
    for name, seq in (("packed", packed), ("padded", padded)):
        seconds = run(model, seq, config.text_dim, args.repeats)
        total = seq.tokens.shape[0]
        rows[name] = {
            "sequence_tokens": total,
            "real_tokens": real,
            "padding_waste": 1 - real / total,
            "seconds": seconds,
            "real_tokens_per_s": real / seconds,
        }
    speedup = rows["packed"]["real_tokens_per_s"] / rows["padded"]["real_tokens_per_s"]
    print(f"{'layout':<8}{'tokens':>8}{'waste':>8}{'step s':>9}{'real tok/s':>12}")
    for name, r in rows.items():
        print(
            f"{name:<8}{r['sequence_tokens']:>8}{r['padding_waste']:>8.1%}{r['seconds']:>9.3f}"
            f"{r['real_tokens_per_s']:>12.0f}"
        )
    print(f"packed / padded throughput: ×{speedup:.2f}  ({len(MIX)} samples, longest {longest})")
    result = {
        "preset": args.preset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": args.threads,
        "samples": [list(g) for g in MIX],
        "rows": rows,
        "packed_over_padded": speedup,
    }
    write_report(args.json, result)


if __name__ == "__main__":
    main()
