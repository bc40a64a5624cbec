"""Peak memory and throughput of the VAE against clip length: streaming (chunked) vs whole clip.

    python benchmarks/vae_memory.py [--model DIR | --preset tiny] [--lengths 17,33,129,513,1025]

Each measurement runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its own.
Encode streams a synthetic 256×256 clip into the encoder chunk by chunk (frames are made as they
are needed and dropped after use, as when reading a file) and drops each chunk of latents as it
comes (as when writing them out); decode streams latents, drawn chunk by chunk, through the
decoder and drops each decoded chunk (as when writing a file). With `--keep-latents` encode
keeps every chunk of latents and decode starts from the whole latent tensor, so memory also
holds the latents, which grow with the clip. The peer is the same network run on the whole clip
at once, for the lengths that fit in memory.
Memory is reported above the process's baseline after the model is loaded. Prints a table and
writes JSON (default benchmarks/results/vae_memory.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch

from kinema.compression.vae import PRESETS, CausalVAE
from kinema.reports import write_report


def synthetic_frames(start: int, stop: int, size: int) -> torch.Tensor:
    """Frames [start, stop) of a smooth moving pattern, (1, 3, n, size, size) in [−1, 1]."""
    t = torch.arange(start, stop, dtype=torch.float32)[:, None, None]
    y = torch.linspace(0, 6.28, size)[None, :, None]
    x = torch.linspace(0, 6.28, size)[None, None, :]
    channels = [torch.sin(x * (c + 1) + y * (2 - c) + 0.1 * t * (c + 1)) for c in range(3)]
    return torch.stack(channels)[None] * 0.8  # (1, 3, n, H, W)


def frame_chunks(num_frames: int, chunk: int) -> list[tuple[int, int]]:
    bounds, start = [(0, 1)], 1
    while start < num_frames:
        bounds.append((start, min(start + chunk, num_frames)))
        start += chunk
    return bounds


def measure(
    vae: CausalVAE,
    op: str,
    mode: str,
    num_frames: int,
    size: int,
    chunk: int,
    bf16: bool,
    keep_latents: bool,
) -> dict:
    """Run one measurement in this process; returns seconds and peak RSS growth (MiB)."""
    cfg = vae.config
    latent_frames = cfg.num_latent_frames(num_frames)
    h = size // cfg.space_compression
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    with torch.no_grad(), autocast:
        if op == "encode" and mode == "stream":
            chunks = (synthetic_frames(a, b, size) for a, b in frame_chunks(num_frames, chunk))
            moments = vae.stream_moments(chunks)
            if keep_latents:
                kept = list(moments)
                count = sum(m.shape[2] for m in kept)
            else:  # each chunk dropped once counted, as when writing it out
                count = sum(m.shape[2] for m in moments)
            assert count == latent_frames
        elif op == "encode":
            vae.encode_moments(synthetic_frames(0, num_frames, size))
        else:
            generator = torch.Generator().manual_seed(0)
            shape = (1, cfg.latent_channels)
            if mode == "stream":
                step = max(1, chunk // cfg.time_compression)
                bounds = frame_chunks(latent_frames, step)
                if keep_latents:
                    z = torch.randn(*shape, latent_frames, h, h, generator=generator)
                    chunks = (z[:, :, a:b] for a, b in bounds)
                else:  # each chunk drawn when the decoder asks for it, as when reading a file
                    chunks = (
                        torch.randn(*shape, b - a, h, h, generator=generator) for a, b in bounds
                    )
                frames = sum(f.shape[2] for f in vae.stream_decode_raw(chunks))
                assert frames == cfg.num_video_frames(latent_frames)
            else:
                vae.decode_raw(torch.randn(*shape, latent_frames, h, h, generator=generator))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "fps": num_frames / seconds, "peak_mib": (peak - baseline) / 1024}


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    vae = load(args)
    row = measure(
        vae, args.op, args.mode, args.frames, args.size, args.chunk, args.bf16, args.keep_latents
    )
    print(json.dumps(row))


def load(args: argparse.Namespace) -> CausalVAE:
    if args.model:
        return CausalVAE.from_pretrained(args.model).eval()
    torch.manual_seed(0)
    return CausalVAE(PRESETS[args.preset]).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a saved VAE folder")
    parser.add_argument("--preset", default="tiny", help="random weights of a preset")
    parser.add_argument("--lengths", default="17,33,129,513,1025")
    parser.add_argument("--whole-up-to", type=int, default=129, help="longest whole-clip peer")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=8, help="frames per streamed chunk")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (default fp32)")
    parser.add_argument(
        "--keep-latents", action="store_true", help="hold every latent in memory while streaming"
    )
    parser.add_argument("--json", default="benchmarks/results/vae_memory.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--op", default="encode", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="stream", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=17, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    rows = []
    for frames in (int(v) for v in args.lengths.split(",")):
        for op in ("encode", "decode"):
            for mode in ("stream", "whole"):
                if mode == "whole" and frames > args.whole_up_to:
                    continue
                command = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--op",
                    op,
                    "--mode",
                    mode,
                    "--frames",
                    str(frames),
                    "--size",
                    str(args.size),
                    "--chunk",
                    str(args.chunk),
                    "--threads",
                    str(args.threads),
                    "--preset",
                    args.preset,
                ]
                command += ["--model", args.model] if args.model else []
                command += ["--bf16"] if args.bf16 else []
                command += ["--keep-latents"] if args.keep_latents else []
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                row = {"frames": frames, "op": op, "mode": mode, **json.loads(out.splitlines()[-1])}
                rows.append(row)
                print(
                    f"{frames:>6} {op:<7}{mode:<7}{row['peak_mib']:>9.0f} MiB"
                    f"{row['fps']:>9.2f} fps",
                    flush=True,
                )

    def peak(op: str, frames: int) -> float:
        return next(
            r["peak_mib"]
            for r in rows
            if r["op"] == op and r["mode"] == "stream" and r["frames"] == frames
        )

    lengths = sorted({r["frames"] for r in rows})
    ref = 33 if 33 in lengths else lengths[0]
    growth = {op: peak(op, lengths[-1]) / max(peak(op, ref), 1e-6) for op in ("encode", "decode")}
    print(
        f"\nstreaming peak memory, {lengths[-1]} vs {ref} frames: "
        f"encode ×{growth['encode']:.2f}, decode ×{growth['decode']:.2f} (target ≤ 1.3)"
    )
    result = {
        "model": args.model or f"preset {args.preset} (random weights)",
        "size": f"{args.size}x{args.size}",
        "chunk_frames": args.chunk,
        "threads": args.threads,
        "dtype": "bfloat16 autocast" if args.bf16 else "float32",
        "keep_latents": args.keep_latents,
        "rows": rows,
        "stream_peak_growth": {"from": ref, "to": lengths[-1], **growth},
        "cpu": platform.processor() or platform.machine(),
    }
    write_report(args.json, result)


if __name__ == "__main__":
    main()
