"""From a training run to videos and model folders: sample renders and `kinema train export`.

`export_run(RUN_DIR, OUT)` takes the EMA weights of the run's latest checkpoint and the VAE its
config names and writes a model folder with `kinema.hub.save_model` (hash-checked, loadable by
`kinema.hub.load_model` and the pipeline). A finished run does this itself into ``OUT/model``.
`export_expert(RUN_DIR, BASE, OUT, boundary)` writes BASE's model folder again with the run's
weights added as its high-noise expert (`kinema.transformer.experts`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from kinema.camera_noise import prime_noise, read_camera_move
from kinema.compression.pixels import to_frames
from kinema.diffusion import draw_noise, generate_latents
from kinema.hub import GenerationDefaults, ModelIndex, load_model, save_model
from kinema.sampling import Solver
from kinema.train.checkpoint import latest_checkpoint, read_checkpoint
from kinema.train.config import DataSource, TrainConfig, data_config, load_config
from kinema.transformer import DiT
from kinema.transformer.experts import TimestepExperts
from kinema.video import write_video

__all__ = [
    "DEFAULT_BOUNDARY",
    "export_expert",
    "export_model",
    "export_run",
    "model_index",
    "render_prompts",
    "sampling_shift",
]

DEFAULT_BOUNDARY = 0.9  # the expert takes the steps from t >= 0.9 (at shift 3, the first 6 of 20)


def sampling_shift(config: TrainConfig) -> float | None:
    """The timestep shift a run's samples and exported model sample at: `samples.shift`, else the
    training shift `model.timestep_shift` (None: the token-count shift)."""
    if config.samples.shift is not None:
        return config.samples.shift
    return config.model.timestep_shift


def model_index(config: TrainConfig, step: int) -> ModelIndex:
    """The model_index.json of a run's export: patch, text encoder, the samples' defaults."""
    s = config.samples
    return ModelIndex(
        patch=tuple(config.model.patch),
        text_encoder=config.model.text_encoder,
        text_max_length=config.model.text_max_length,
        defaults=GenerationDefaults(
            width=s.width,
            height=s.height,
            num_frames=s.num_frames,
            fps=s.fps,
            num_inference_steps=s.steps,
            guidance_scale=s.guidance_scale,
            given_guidance_scale=s.given_guidance_scale,
            given_guidance_min_t=s.given_guidance_min_t,
            shift=sampling_shift(config),
            image_first=s.image_first,
            solver=s.solver,
            camera_noise=s.camera_noise,
            held_start=s.held_start,
        ),
        extra={
            "training": {
                "step": step,  # counted from init_from's weights when a run started from them
                "init_from": config.model.init_from,
                "dit_preset": config.model.preset,
                "dit_overrides": dict(config.model.overrides),
                "out_dir": config.out_dir,
                "seed": config.seed,
                "weights": "ema",
                "ema_decay": config.ema_decay,
            }
        },
    )


def export_model(
    directory: str | Path,
    dit: DiT,
    vae: torch.nn.Module,
    config: TrainConfig,
    step: int,
    dit_dtype: torch.dtype | None = None,
) -> Path:
    return save_model(directory, vae, dit, model_index(config, step), dit_dtype=dit_dtype)


def export_run(
    run_dir: str | Path, out: str | Path | None = None, dit_dtype: torch.dtype | None = None
) -> Path:
    """EMA weights of `run_dir`'s latest checkpoint + its VAE -> a model folder (default
    RUN_DIR/model); `dit_dtype=torch.bfloat16` stores the transformer in bfloat16. A VAE that
    did not encode the run's cached latents is refused, and so is an `out` that is a file or a
    non-empty folder other than a model folder (`kinema.hub.save_model`)."""
    from kinema.compression.vae import CausalVAE

    run_dir = Path(run_dir)
    config, step, dit = _run_weights(run_dir)
    vae = CausalVAE.from_pretrained(config.model.vae)
    _check_trained_on(config, vae)
    target = out if out is not None else run_dir / "model"
    return export_model(target, dit, vae, config, step, dit_dtype)


def export_expert(
    run_dir: str | Path,
    base: str | Path,
    out: str | Path,
    boundary: float = DEFAULT_BOUNDARY,
    dit_dtype: torch.dtype | None = None,
    int8_delta: bool = False,
) -> Path:
    """The model folder `base` (verified) with the EMA weights of `run_dir`'s latest checkpoint
    as its high-noise expert from t >= `boundary` (one it had is replaced), written to `out`.
    Only the tensors the run changed are stored (with `int8_delta`, its matrices as int8
    differences from `base`'s: `kinema.hub.save_model`); the run must have used `base`'s VAE."""
    config, step, expert = _run_weights(Path(run_dir))
    model = load_model(base)
    _check_trained_on(config, model.vae)
    if config.data.source == DataSource.ONLINE:  # its latents came from model.vae itself
        _check_same_vae(config.model.vae, model.vae, base)
    dit = model.dit.low if isinstance(model.dit, TimestepExperts) else model.dit
    training = model_index(config, step).extra["training"]
    training.update(boundary=boundary, trainable=list(config.model.trainable))
    index = dataclasses.replace(
        model.index,
        high_noise_boundary=boundary,
        extra={**model.index.extra, "high_noise_expert": training},
    )
    card = Path(base) / "README.md"
    return save_model(
        out,
        model.vae,
        dit,
        index,
        dit_dtype=dit_dtype,
        model_card=card.read_text() if card.is_file() else None,
        high_noise_dit=expert,
        int8_delta=int8_delta,
    )


def _check_same_vae(run_vae: str, vae: torch.nn.Module, base: str | Path) -> None:
    from kinema.compression.vae import CausalVAE

    theirs = CausalVAE.from_pretrained(run_vae).state_dict()
    if theirs.keys() != vae.state_dict().keys() or any(
        not torch.equal(v, theirs[k]) for k, v in vae.state_dict().items()
    ):
        raise ValueError(
            f"the run trained through the VAE {run_vae}, not {base}'s: an expert must share the "
            f"latents of the model it joins"
        )


def _run_weights(run_dir: Path) -> tuple[TrainConfig, int, DiT]:
    """A run's config, and the step and EMA weights of its latest checkpoint."""
    config = load_config(run_dir / "config.yaml")
    path = latest_checkpoint(run_dir)
    if path is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet (checkpoints/latest)")
    if config.model.vae is None:
        raise ValueError(
            f"{run_dir / 'config.yaml'} names no VAE (model.vae): a model folder needs one"
        )
    ckpt = read_checkpoint(path)
    dit = DiT(config.model.dit_config())
    dit.load_state_dict(ckpt.ema, strict=True)
    return config, ckpt.step, dit


def _check_trained_on(config: TrainConfig, vae: torch.nn.Module) -> None:
    """Refuse a VAE other than the one that encoded the run's cached latents (when the cache is
    still there to tell; online runs encode with model.vae itself)."""
    from kinema.data.cache import META_NAME, check_cache_vae

    if config.data.source != DataSource.CACHED:
        return
    cache_dir = data_config(config).cache_dir
    if cache_dir is not None and (Path(cache_dir) / META_NAME).is_file():
        check_cache_vae(cache_dir, vae)


def _encode_prompt(text_encoder: Any, prompt: str) -> torch.Tensor:
    """(L, D) text tokens of one prompt (real tokens only, as the training data has them)."""
    return text_encoder.encode([prompt]).sequences()[0]


@torch.no_grad()
def render_prompts(
    dit: DiT, vae: torch.nn.Module, text_encoder: Any, config: TrainConfig, directory: Path
) -> list[Path]:
    """One .mp4 per `config.samples.prompts` entry (fixed noise per prompt, camera-primed by
    `samples.camera_noise`) + prompts.json."""
    s, patch = config.samples, tuple(config.model.patch)
    shape = vae.config.latent_shape(s.num_frames, s.height, s.width)  # (C, t, h, w)
    if any(n % p for n, p in zip(shape[1:], patch, strict=True)):
        raise ValueError(
            f"samples of {s.num_frames} frames at {s.width}x{s.height} give latents {shape[1:]}, "
            f"not a multiple of the patch {patch}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    device = next(dit.parameters()).device
    paths = []
    for i, prompt in enumerate(s.prompts):
        text = _encode_prompt(text_encoder, prompt).to(device)
        generator = torch.Generator().manual_seed(s.seed + i)
        noise = prime_noise(
            draw_noise(shape, patch, generator),
            read_camera_move(prompt),
            vae.config.time_compression / s.fps,
            s.camera_noise,
            generator=generator,
        )
        latents = generate_latents(
            dit,
            text,
            text[:0],  # the unconditional: no text tokens, as in caption dropout
            shape,
            patch,
            steps=s.steps,
            guidance_scale=s.guidance_scale,
            shift=sampling_shift(config),
            solver=Solver.parse(s.solver),
            generator=generator,  # the stochastic solver's fresh noise at each step
            noise=noise,
        )
        video = vae.decode(latents[None].to(device), num_frames=s.num_frames)  # (1, 3, T, H, W)
        paths.append(write_video(directory / f"{i:02d}.mp4", to_frames(video), fps=s.fps))
    (directory / "prompts.json").write_text(json.dumps(list(s.prompts), indent=2) + "\n")
    return paths
