"""`kinema bench modes`: every generation mode on world clips, with the numbers that say whether
a mode did its job.

    kinema bench modes --model DIR --json OUT.json [--clips 2] [--steps N] [--long-seconds 60]
    kinema bench modes --random-model --json OUT.json     # plumbing check on a seeded debug model

Inputs are world clips the benchmark renders itself (`kinema.world`, at the model's default size,
length and fps), with their short prompts. Per mode it reports:

- **given PSNR** (dB): the window's decoded given frames (the image, the video context) against
  the inputs: how well given frames survive being encoded, kept clean through sampling, and
  decoded next to generated ones; the VAE alone on the same clips is its ceiling (`vae_psnr`);
- **seam ratio**: the frame-to-frame change across each seam (every boundary between input
  frames and a window's frames, or between two windows; for `loop` also last -> first) divided
  by the clip's median frame-to-frame change. 1.0 is seamless; a cut between unrelated frames is
  much larger (a static clip's median is floored at MIN_CHANGE). The row gives the mean, the
  median (the statistic the default model's targets are stated in) and the maximum over its
  seams, and lists every seam's ratio in run order (`seam_ratios`) beside each run's prompt
  (`prompts`), so one clip's outlier can be told from a mode-wide jump. Modes with seams are
  run a second time with ``blend_seams=False`` (same seeds; `long` only at its full length), so
  the row also gives the seams without the pipeline's seam blending
  (`unblended_seam_ratio_*`), side by side;
- **flicker ratio**: the median frame-to-frame change inside generated spans divided by the
  median inside input spans (seams excluded), for modes that have both (extend, connect). It
  says how much more the made frames move than the given video, and so how much of a seam ratio
  is the generated frames' own unsteadiness rather than a jump at the seam;
- for `extend-forward`, how its new frames compare with what the world itself shows next (the
  clip's scene rendered on; `future_psnr`, dB), and how far they move from the last given frame
  against how far the world's frames do (`motion_ratio`, median over the clips; 1.0 moves as
  much as the world, 0 holds still, above 1 drifts or flickers): a continuation that freezes or
  churns shows here, whatever its seams;
- for modes whose given image's latent the pipeline fits to the image through the decoder by
  default (i2v; ``refine_steps``), the given PSNR of the same runs without that
  (`unrefined_given_psnr`), side by side;
- for `edit` at several strengths, PSNR and SSIM of the result against the source (how much is
  kept);
- for `long`, the peak resident memory of two lengths (Linux), to show memory is bounded by a
  window rather than growing with the video;
- seconds per call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kinema.compression.losses import psnr, ssim
from kinema.compression.vae import PRESETS as VAE_PRESETS
from kinema.compression.vae import CausalVAE
from kinema.held_start import check_held_start
from kinema.hub import GenerationDefaults, ModelIndex, save_model
from kinema.modes import Mode, Span
from kinema.pipeline import Pipeline, PipelineOutput, default_refine_steps, to_video_tensor
from kinema.reports import check_writable, write_report
from kinema.sampling import check_guidance_min_t
from kinema.transformer import DiT, get_preset
from kinema.world.captions import short_prompt
from kinema.world.render import render_scene
from kinema.world.sampler import sample_scene
from kinema.world.spec import SceneSpec

__all__ = [
    "BenchConfig",
    "flicker_ratio",
    "format_table",
    "frame_changes",
    "future_fit",
    "make_random_model",
    "run_bench",
    "seam_ratios",
    "seams_of",
]

# edit and long have rows of their own
MODES = (Mode.T2V, Mode.T2I, Mode.I2V, Mode.EXTEND_FORWARD, Mode.EXTEND_BACKWARD, Mode.CONNECT)
MODES += (Mode.LOOP,)
BENCHED = (*MODES, Mode.EDIT, Mode.LONG)  # every mode the bench can run
EDIT_STRENGTHS = (0.2, 0.4, 0.6, 0.8, 1.0)
MIN_CHANGE = 1e-3  # floor of the median frame change (mean |diff| in [0, 1] units)
NOT_QUALITY = (
    "a random model: these figures check the plumbing (shapes, kept frames, seams measured), "
    "they are not quality figures"
)


@dataclass(frozen=True)
class BenchConfig:
    clips: int = 2  # world clips (inputs) per mode
    seed: int = 0  # world clips and generation seeds
    steps: int | None = None  # sampling steps (None: the model's default)
    long_seconds: float = 60.0  # length of the `long` video
    strengths: tuple[float, ...] = EDIT_STRENGTHS
    given_guidance_min_t: float | None = None  # None: the model's (kinema.pipeline)
    held_start: float | None = None  # None: the model's (kinema.held_start)
    modes: tuple[Mode, ...] = BENCHED  # the modes to run, a subset of BENCHED (in its order)

    def __post_init__(self) -> None:
        modes = tuple(self.modes)
        unknown = [m for m in modes if m not in BENCHED]
        if not modes or unknown:
            valid = ", ".join(m.value for m in BENCHED)
            raise ValueError(f"modes (--modes) must name some of {valid}; got {list(modes)}")
        if self.clips < 1:
            raise ValueError(f"clips (--clips) must be >= 1, got {self.clips}")
        seconds = self.long_seconds
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"long_seconds (--long-seconds) must be finite and > 0, got {seconds}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps (--steps) must be >= 1, got {self.steps}")
        if self.given_guidance_min_t is not None:
            check_guidance_min_t(self.given_guidance_min_t, "given_guidance_min_t")
        if self.held_start is not None:
            check_held_start(self.held_start, "held_start (--held-start)")


# ------------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------------


def frame_changes(frames: np.ndarray, wrap: bool = False) -> np.ndarray:
    """Mean absolute change (in [0, 1]) from each frame to the next: (T - 1,), or (T,) with the
    last -> first change appended when ``wrap``."""
    x = frames.astype(np.float32) / 255.0  # (T, H, W, 3)
    changes = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))  # (T - 1,)
    if wrap:
        changes = np.append(changes, np.abs(x[0] - x[-1]).mean())
    return changes


def seams_of(output: PipelineOutput) -> list[int]:
    """Seams as frame indices ``i`` (the change from frame i - 1 to frame i); 0 is the loop's
    last -> first."""
    seams = [span.start for span in output.spans[1:]]
    return [*seams, 0] if output.loop else seams


def seam_ratios(frames: np.ndarray, seams: list[int], wrap: bool = False) -> list[float]:
    """Change across each seam / the clip's median frame change (1.0 = seamless)."""
    if not seams:
        return []
    changes = frame_changes(frames, wrap)
    median = max(float(np.median(changes)), MIN_CHANGE)
    return [float(changes[i - 1] if i > 0 else changes[-1]) / median for i in seams]


def flicker_ratio(frames: np.ndarray, spans: list[Span]) -> float | None:
    """Median frame change inside generated spans / median inside input spans, seams excluded
    (the input's median floored at MIN_CHANGE); None without two frames of each kind."""
    changes = frame_changes(frames)
    inside: dict[bool, list[float]] = {True: [], False: []}
    for span in spans:  # changes[i] is frame i -> i + 1, so a span holds start .. stop - 2
        inside[span.window is not None] += changes[span.start : span.stop - 1].tolist()
    if not inside[True] or not inside[False]:
        return None
    return float(np.median(inside[True])) / max(float(np.median(inside[False])), MIN_CHANGE)


def _psnr_ssim(frames: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    a, b = to_video_tensor(frames), to_video_tensor(reference)
    return float(psnr(a, b)), float(ssim(a, b))


# ------------------------------------------------------------------------------------------------
# inputs and a random model
# ------------------------------------------------------------------------------------------------


def world_scenes(n: int, pipe: Pipeline, seed: int) -> list[tuple[SceneSpec, str]]:
    """`n` world scenes at the model's default size, length and fps, with prompts."""
    d = pipe.index.defaults
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(n):
        spec = sample_scene(rng, d.width, d.height, num_frames=d.num_frames, fps=d.fps)
        scenes.append((spec, short_prompt(spec, rng)))
    return scenes


def world_clips(n: int, pipe: Pipeline, seed: int) -> list[tuple[np.ndarray, str]]:
    """`n` rendered world clips at the model's default size, length and fps, with prompts."""
    return [(render_scene(spec), prompt) for spec, prompt in world_scenes(n, pipe, seed)]


def future_fit(output: PipelineOutput, spec: SceneSpec) -> tuple[float, float]:
    """(PSNR in dB, motion ratio) of an extend-forward output's new frames against the frames the
    world shows after the input (``spec`` rendered on). The motion ratio is the mean absolute
    difference of the new frames from the last input frame over the world's (floored at
    MIN_CHANGE)."""
    truth = render_scene(dataclasses.replace(spec, num_frames=output.num_frames))
    new = np.concatenate([np.arange(s.start, s.stop) for s in output.spans if s.window is not None])
    db = float(psnr(to_video_tensor(output.frames[new]), to_video_tensor(truth[new])))
    made, real = output.frames[new].astype(np.float32), truth[new].astype(np.float32)
    last = truth[new[0] - 1].astype(np.float32)  # the input's last frame, as given
    moved = float(np.abs(real - last).mean()) / 255.0
    return db, float(np.abs(made - last).mean()) / 255.0 / max(moved, MIN_CHANGE)


def make_random_model(
    directory: str | Path, seed: int = 0, vae_dir: str | Path | None = None
) -> Path:
    """A seeded random model folder for plumbing checks: the debug VAE (or a trained one from
    ``vae_dir``) and a debug DiT with MiniLM-sized text. Zero-initialized layers get small random
    weights, so the transformer is not the identity."""
    torch.manual_seed(seed)
    vae = CausalVAE(VAE_PRESETS["debug"]) if vae_dir is None else CausalVAE.from_pretrained(vae_dir)
    dit = DiT(get_preset("debug", in_dim=vae.config.latent_channels * 4, text_dim=384))
    with torch.no_grad():
        for p in dit.parameters():
            if not p.any():
                p.normal_(0.0, 0.02)
    index = ModelIndex(
        patch=(1, 2, 2),
        defaults=GenerationDefaults(num_inference_steps=10),
        extra={"note": "random weights: " + NOT_QUALITY},
    )
    return save_model(directory, vae, dit, index)


def _peak_rss_mb() -> float | None:
    """Peak resident memory (VmHWM) since the last reset, MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


# ------------------------------------------------------------------------------------------------
# the benchmark
# ------------------------------------------------------------------------------------------------


def _timed(pipe: Pipeline, prompt: str, **kwargs: Any) -> tuple[PipelineOutput, float]:
    """The pipeline's output and the seconds the call took."""
    start = time.perf_counter()
    out = pipe(prompt, **kwargs)
    return out, time.perf_counter() - start


def _mean(values: list[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def _seam_ratios(outputs: list[tuple[PipelineOutput, float]]) -> list[float]:
    return [r for out, _ in outputs for r in seam_ratios(out.frames, seams_of(out), out.loop)]


def _mode_row(mode: Mode, outputs: list[tuple[PipelineOutput, float]]) -> dict[str, Any]:
    """One row: means over the clips of given PSNR, seam ratios, flicker ratio and seconds, with
    each run's prompt and every seam's ratio (in run order) beside them."""
    seams = _seam_ratios(outputs)
    given = [out.given_psnr for out, _ in outputs if out.given_psnr is not None]
    flicker = [flicker_ratio(out.frames, out.spans) for out, _ in outputs]
    first = outputs[0][0]
    return {
        "mode": mode.value,
        "runs": len(outputs),
        "frames": first.num_frames,
        "windows": len(first.latents),
        "given_psnr": _mean(given),
        "seam_ratio_mean": _mean(seams),
        "seam_ratio_median": float(statistics.median(seams)) if seams else None,
        "seam_ratio_max": max(seams) if seams else None,
        "flicker_ratio": _mean([f for f in flicker if f is not None]),
        "seconds": _mean([s for _, s in outputs]),
        "prompts": [out.settings.prompt for out, _ in outputs],
        "seam_ratios": seams,
    }


def bench_modes(pipe: Pipeline, config: BenchConfig) -> list[dict[str, Any]]:
    """Rows for the modes of `config.modes` but edit and long, on `config.clips` world clips
    each."""
    scenes = world_scenes(config.clips + 1, pipe, config.seed)
    clips = [(render_scene(spec), prompt) for spec, prompt in scenes]
    rows = []
    for mode in (m for m in MODES if m in config.modes):
        outputs = [_run(pipe, mode, config, i, clips) for i in range(config.clips)]
        row = _mode_row(mode, outputs)
        if mode is Mode.EXTEND_FORWARD:
            fits = [
                future_fit(out, spec)
                for (out, _), (spec, _) in zip(outputs, scenes[: len(outputs)], strict=True)
            ]
            row["future_psnr"] = _mean([db for db, _ in fits])
            row["motion_ratio"] = float(statistics.median(ratio for _, ratio in fits))
        raw = []
        if row["seam_ratio_mean"] is not None:
            raw = [
                _run(pipe, mode, config, i, clips, blend_seams=False) for i in range(config.clips)
            ]
        unrefined = []
        if _refines_by_default(outputs[0][0]):
            unrefined = [
                _run(pipe, mode, config, i, clips, refine_steps=0) for i in range(config.clips)
            ]
        given = [out.given_psnr for out, _ in unrefined if out.given_psnr is not None]
        rows.append({**_with_unblended(row, raw), "unrefined_given_psnr": _mean(given)})
    return rows


def _refines_by_default(output: PipelineOutput) -> bool:
    """Whether the pipeline fitted any of the run's given latents by default."""
    return any(default_refine_steps(g.numpy()) for g in output.given_latents if g.any())


def _with_unblended(
    row: dict[str, Any], unblended: list[tuple[PipelineOutput, float]]
) -> dict[str, Any]:
    """The row plus the seams of the same runs without seam blending (None: not run)."""
    seams = _seam_ratios(unblended)
    return {
        **row,
        "unblended_seam_ratio_mean": _mean(seams),
        "unblended_seam_ratio_max": max(seams) if seams else None,
    }


def _run(
    pipe: Pipeline,
    mode: Mode,
    config: BenchConfig,
    i: int,
    clips: list[tuple[np.ndarray, str]],
    blend_seams: bool = True,
    refine_steps: int | None = None,
) -> tuple[PipelineOutput, float]:
    frames, prompt = clips[i]
    inputs: dict[str, Any] = {
        Mode.I2V: {"image": frames[0]},
        Mode.EXTEND_FORWARD: {"video": frames},
        Mode.EXTEND_BACKWARD: {"video": frames},
        Mode.CONNECT: {"video": frames, "video2": clips[i + 1][0]},
    }.get(mode, {})
    return _timed(
        pipe,
        prompt,
        mode=mode,
        num_inference_steps=config.steps,
        given_guidance_min_t=config.given_guidance_min_t,
        held_start=config.held_start,
        seed=config.seed + i,
        blend_seams=blend_seams,
        refine_steps=refine_steps,
        **inputs,
    )


def bench_edit(pipe: Pipeline, config: BenchConfig) -> list[dict[str, Any]]:
    """PSNR/SSIM of edits against their source at each strength (means over clips)."""
    clips = world_clips(config.clips, pipe, config.seed)
    rows = []
    for strength in config.strengths:
        scores, seconds = [], []
        for i, (frames, prompt) in enumerate(clips):
            out, s = _timed(
                pipe,
                prompt,
                mode=Mode.EDIT,
                video=frames,
                strength=strength,
                num_inference_steps=config.steps,
                seed=config.seed + i,
            )
            scores.append(_psnr_ssim(out.frames, frames[: out.num_frames]))
            seconds.append(s)
        rows.append(
            {
                "mode": "edit",
                "strength": strength,
                "runs": len(clips),
                "psnr": _mean([p for p, _ in scores]),
                "ssim": _mean([q for _, q in scores]),
                "seconds": _mean(seconds),
            }
        )
    return rows


def bench_long(pipe: Pipeline, config: BenchConfig) -> dict[str, Any]:
    """A `long` video of config.long_seconds, and the peak memory of a sixth of that length."""
    prompt = world_clips(1, pipe, config.seed)[0][1]
    fps = pipe.index.defaults.fps
    peaks = {}
    kwargs: dict[str, Any] = {
        "mode": Mode.LONG,
        "num_inference_steps": config.steps,
        "given_guidance_min_t": config.given_guidance_min_t,
        "held_start": config.held_start,
    }
    for seconds in (config.long_seconds / 6, config.long_seconds):
        _reset_peak_rss()
        frames = max(2, round(seconds * fps))
        out, wall = _timed(pipe, prompt, num_frames=frames, seed=config.seed, **kwargs)
        peaks[f"{frames / fps:g}s"] = _peak_rss_mb()
    raw = _timed(pipe, prompt, num_frames=frames, seed=config.seed, blend_seams=False, **kwargs)
    row = _with_unblended(_mode_row(Mode.LONG, [(out, wall)]), [raw])
    return {**row, "video_seconds": out.num_frames / fps, "peak_rss_mb": peaks}


def vae_psnr(pipe: Pipeline, config: BenchConfig) -> float:
    """Mean PSNR of the VAE alone (encode -> decode) on the input clips: given PSNR's ceiling."""
    clips = world_clips(config.clips, pipe, config.seed)
    scores = [_psnr_ssim(pipe.decode_latents(pipe.encode_video(f), len(f)), f)[0] for f, _ in clips]
    return float(statistics.fmean(scores))


def run_bench(pipe: Pipeline, config: BenchConfig) -> dict[str, Any]:
    """The whole benchmark as a JSON-ready report."""
    start = time.perf_counter()
    d = pipe.index.defaults
    report: dict[str, Any] = {
        "model": None if pipe.model_dir is None else str(pipe.model_dir),
        "size": f"{d.width}x{d.height}",
        "clip_frames": d.num_frames,
        "fps": d.fps,
        "steps": config.steps or d.num_inference_steps,
        "guidance_scale": d.guidance_scale,
        "given_guidance_scale": d.given_guidance_scale,
        "given_guidance_min_t": d.given_guidance_min_t
        if config.given_guidance_min_t is None
        else config.given_guidance_min_t,
        "held_start": d.held_start if config.held_start is None else config.held_start,
        "clips": config.clips,
        "seed": config.seed,
        "torch_threads": torch.get_num_threads(),
        "vae_psnr": vae_psnr(pipe, config),
        "modes": bench_modes(pipe, config),
        "edit": bench_edit(pipe, config) if Mode.EDIT in config.modes else [],
        "long": bench_long(pipe, config) if Mode.LONG in config.modes else None,
    }
    if "note" in pipe.index.extra:
        report["note"] = pipe.index.extra["note"]
    report["seconds"] = time.perf_counter() - start
    return report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(report: dict[str, Any]) -> str:
    """The report as text tables."""
    lines = [
        f"{'mode':<16}{'frames':>7}{'windows':>8}{'given PSNR':>11}{'seam mean':>10}"
        f"{'median':>8}{'seam max':>9}{'unblended':>10}{'flicker':>8}{'s/run':>8}"
    ]
    long = [] if report["long"] is None else [report["long"]]
    for row in [*report["modes"], *long]:
        lines.append(
            f"{row['mode']:<16}{row['frames']:>7}{row['windows']:>8}"
            f"{_fmt(row['given_psnr'], '.2f'):>11}{_fmt(row['seam_ratio_mean'], '.2f'):>10}"
            f"{_fmt(row.get('seam_ratio_median'), '.2f'):>8}{_fmt(row['seam_ratio_max'], '.2f'):>9}"
            f"{_fmt(row['unblended_seam_ratio_mean'], '.2f'):>10}"
            f"{_fmt(row['flicker_ratio'], '.2f'):>8}{row['seconds']:>8.2f}"
        )
    lines.append("unblended: seam mean of the same runs with blend_seams=False")
    lines.append("flicker: median frame change inside generated spans / inside the input's")
    for row in report["modes"]:
        if row["unrefined_given_psnr"] is not None:
            lines.append(
                f"{row['mode']} given PSNR without latent refinement (refine_steps=0): "
                f"{row['unrefined_given_psnr']:.2f} dB"
            )
        if row.get("future_psnr") is not None:
            lines.append(
                f"{row['mode']} against the world's own next frames: {row['future_psnr']:.2f} dB, "
                f"motion ratio {row['motion_ratio']:.2f} (1: moves as much as the world)"
            )
    lines.append(f"VAE alone (encode -> decode of the input clips): {report['vae_psnr']:.2f} dB")
    if report["edit"]:
        lines.append("")
        lines.append(f"{'edit strength':<16}{'PSNR':>8}{'SSIM':>8}{'s/run':>8}")
    for row in report["edit"]:
        lines.append(
            f"{row['strength']:<16.2f}{row['psnr']:>8.2f}{row['ssim']:>8.3f}{row['seconds']:>8.2f}"
        )
    peaks = {} if report["long"] is None else report["long"]["peak_rss_mb"]
    if peaks and all(v is not None for v in peaks.values()):
        lines.append("")
        lines.append("long peak RSS: " + ", ".join(f"{k}: {v:.0f} MiB" for k, v in peaks.items()))
    if "note" in report:
        lines.append(f"note: {report['note']}")
    return "\n".join(lines)


def main_bench(
    model: str | None,
    random_model: bool,
    json_out: str | Path,
    config: BenchConfig,
    vae_dir: str | None = None,
) -> dict[str, Any]:
    """What `kinema bench modes` runs: load (or make) the model, bench, write JSON, print."""
    if random_model and model is not None:
        raise ValueError("give either --model DIR or --random-model, not both")
    if vae_dir is not None and not random_model:
        raise ValueError("--vae DIR goes with --random-model (a model folder has its own VAE)")
    check_writable(json_out, "--json")  # before the bench: a bad path never costs a run
    with tempfile.TemporaryDirectory(prefix="kinema-random-model-") as tmp:
        if random_model:
            model = str(make_random_model(Path(tmp) / "model", config.seed, vae_dir))
        report = run_bench(Pipeline.from_pretrained(model), config)
    if random_model:
        vae = "debug VAE" if vae_dir is None else f"VAE {vae_dir}"
        report["model"] = f"random debug DiT (seed {config.seed}), {vae}"
    write_report(json_out, report)
    print(format_table(report))
    print(f"report: {json_out}")
    return report
