"""Reconstruction quality and speed of a VAE on video files: encode → decode, PSNR and SSIM.

    kinema vae eval [--model DIR] --json OUT.json VIDEO...

Native settings: each video is read (up to `max_frames`, trimmed to 1 + 4k frames), resized so its
short side is `short_side` pixels, and center-cropped to a multiple of the spatial compression. It
is encoded and decoded whole-clip in fp32 with the posterior mean, and the decoded frames, rounded
to uint8 as a player would show them, are compared with the input frames. Besides each clip's
PSNR and SSIM, the report gives PSNR frame by frame (`psnr_by_frame`, and its mean over the clips
that reach each frame), which shows whether quality drifts along a clip, and the PSNR of the
frame-to-frame changes (`change_psnr`: each decoded frame minus the one before it, against the
same for the input), which falls when the reconstruction flickers even where each frame's own
error is small.

With ``refine_steps`` (``--refine-steps N``) the encoder's latents are fitted to the clip through
the frozen decoder by N Adam steps before decoding (:mod:`kinema.compression.refine`, the fit
image-to-video uses for its image). That is an encode-time optimization, not the one-pass native
setting: it costs N decoder passes forward and back, which ``encode_fps`` includes, and it moves
the latents away from the encoder's (``latent_change``, rms), which a transformer trained on the
encoder's latents never saw.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from kinema.compression.losses import frame_differences, psnr, psnr_from_mse, ssim
from kinema.compression.pixels import quantize, to_video_tensor
from kinema.compression.refine import refine_latents
from kinema.compression.vae import CausalVAE
from kinema.hub import DEFAULT_MODEL_DIR
from kinema.video import read_video, resize_and_crop

DEFAULT_VAE_DIR = DEFAULT_MODEL_DIR / "vae"


def vae_dir(model_dir: str | Path | None) -> Path:
    """The VAE folder `model_dir` names (a VAE folder, or a model folder with a vae/ inside), or
    the shipped default's."""
    if model_dir is None:
        if not (DEFAULT_VAE_DIR / "config.json").is_file():
            raise FileNotFoundError(
                f"no --model given and the shipped default VAE is not at {DEFAULT_VAE_DIR}; "
                "pass --model DIR (e.g. runs/vae/vae from `kinema vae train`)"
            )
        return DEFAULT_VAE_DIR
    path = Path(model_dir)
    return path / "vae" if (path / "vae" / "config.json").is_file() else path


def load_vae(model_dir: str | Path | None) -> CausalVAE:
    return CausalVAE.from_pretrained(vae_dir(model_dir))


def prepare_frames(
    frames: np.ndarray, short_side: int, multiple: int, time_factor: int
) -> np.ndarray:
    """Trim to 1 + time_factor·k frames; resize the short side; crop H, W to multiples.
    ``short_side`` must be an int of at least ``multiple`` (the VAE's space compression)."""
    if isinstance(short_side, bool) or not isinstance(short_side, int) or short_side < multiple:
        raise ValueError(
            f"short_side must be an int >= {multiple} (the VAE's space compression), "
            f"got {short_side!r}"
        )
    T = 1 + (frames.shape[0] - 1) // time_factor * time_factor
    H, W = frames.shape[1:3]
    scale = short_side / min(H, W)
    height = max(multiple, round(H * scale) // multiple * multiple)
    width = max(multiple, round(W * scale) // multiple * multiple)
    return resize_and_crop(frames[:T], height, width, mode="center")


@torch.no_grad()
def evaluate_frames(
    vae: CausalVAE,
    name: str,
    frames: np.ndarray,
    short_side: int = 256,
    max_frames: int = 33,
    refine_steps: int = 0,
) -> dict[str, Any]:
    """Encode → decode one clip of uint8 frames (T, H, W, 3) at the native settings, with the
    latents fitted to the clip by ``refine_steps`` decoder steps in between when it is > 0."""
    if refine_steps < 0:
        raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
    frames = prepare_frames(
        frames[:max_frames], short_side, vae.config.space_compression, vae.config.time_compression
    )
    video = to_video_tensor(frames)
    start = time.perf_counter()
    latents = vae.encode(video)
    change = None
    if refine_steps:
        every_frame = torch.ones(video.shape[2], dtype=torch.bool)
        every_latent = torch.ones(latents.shape[2], dtype=torch.bool)
        fitted = refine_latents(vae, latents, video, every_frame, every_latent, refine_steps)
        change = float((fitted - latents).square().mean().sqrt())
        latents = fitted
    encoded = time.perf_counter()
    recon = quantize(vae.decode(latents))
    decoded = time.perf_counter()
    T = video.shape[2]
    frame_mse = ((recon - video) ** 2).mean(dim=(0, 1, 3, 4))
    change_mse = (frame_differences(recon) - frame_differences(video)).square().mean()
    return {
        "name": name,
        "frames": T,
        "height": video.shape[3],
        "width": video.shape[4],
        "latent_shape": list(latents.shape[1:]),
        "psnr": float(psnr(recon, video)),
        "ssim": float(ssim(recon, video)),
        "psnr_by_frame": [psnr_from_mse(float(m)) for m in frame_mse],
        "change_psnr": psnr_from_mse(float(change_mse)) if T > 1 else None,  # None: one frame
        "latent_change": change,  # rms of fitted minus encoder latents; None without refinement
        "encode_fps": T / (encoded - start),
        "decode_fps": T / (decoded - encoded),
    }


def evaluate_clips(
    vae: CausalVAE,
    clips: dict[str, np.ndarray],
    short_side: int = 256,
    max_frames: int = 33,
    refine_steps: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Per-clip results and their means, for {name: uint8 frames}; `progress` shows a bar."""
    bar = tqdm(clips.items(), desc="vae eval", unit="clip", disable=not progress)
    videos = [evaluate_frames(vae, n, f, short_side, max_frames, refine_steps) for n, f in bar]
    keys = ("psnr", "ssim", "encode_fps", "decode_fps")
    longest = max(v["frames"] for v in videos)
    by_frame = [
        float(np.mean([v["psnr_by_frame"][k] for v in videos if v["frames"] > k]))
        for k in range(longest)
    ]
    changes = [v["change_psnr"] for v in videos if v["change_psnr"] is not None]
    return {
        "videos": videos,
        "mean": {
            **{k: float(np.mean([v[k] for v in videos])) for k in keys},
            "change_psnr": float(np.mean(changes)) if changes else None,  # over clips of 2+ frames
            "latent_change": (
                float(np.mean([v["latent_change"] for v in videos])) if refine_steps else None
            ),
        },
        "psnr_by_frame": by_frame,
        "settings": {
            "short_side": short_side,
            "max_frames": max_frames,
            "refine_steps": refine_steps,
            "dtype": "float32",
            "threads": torch.get_num_threads(),
        },
    }


def hold_still(clips: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each clip as a locked-off shot: its first frame held for its length, named ``NAME
    (still)``. Reconstructed, such a clip should not change at all, so its ``change_psnr`` is
    the decoder's own flicker where nothing moves."""
    return {f"{k} (still)": np.repeat(v[:1], len(v), axis=0) for k, v in clips.items()}


def read_clips(paths: list[str | Path], max_frames: int) -> dict[str, np.ndarray]:
    return {str(p): read_video(p, max_frames=max_frames).frames for p in paths}
