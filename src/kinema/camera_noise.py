"""Camera-primed noise: starting noise that already moves the way the prompt's camera does.

At high noise the transformer reads which way a clip moves off the noisy clip itself, and the
prompt's direction words hardly change its prediction (docs/benchmarks.md, "Where the sign is
decided"): sampled from independent noise, a pan's direction is settled by chance in the first
steps. So the pipeline reads the camera move a prompt names (:func:`read_camera_move`) and
starts sampling from noise that already makes it (:func:`prime_noise`): every later latent
frame carries latent frame 0's noise along the camera's path (a pan shifts it; a zoom scales it
about the centre, out of a wider canvas of noise around frame 0's when the view widens), mixed
with fresh noise so that every value stays a unit Gaussian. This is warped-noise sampling
without training (as in Go-with-the-Flow, Burgert et al. 2025, and FreeTraj, Qiu et al. 2024).

Moves are read from English phrases: pans and tilts ("the camera pans left", "panning up",
"tilts downward", "the view slides to the right") and zooms ("zooms in", "pushes in", "pulls
back", "the view widens out"). How far a move goes per second is the model's
(:class:`CameraSpeeds`, in ``model_index.json``): the speeds of the clips it learnt from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "CameraMove",
    "CameraSpeeds",
    "check_camera_noise",
    "phase_shift",
    "prime_noise",
    "read_camera_move",
]


@dataclass(frozen=True)
class CameraMove:
    """A camera move: a pan of the view along ``pan`` (x right, y down; a unit vector or zero)
    or a zoom (``zoom`` +1 in, -1 out)."""

    pan: tuple[float, float] = (0.0, 0.0)
    zoom: int = 0


@dataclass(frozen=True)
class CameraSpeeds:
    """How fast the camera of the model's training clips moves."""

    pan: float = 0.09  # the view's shift per second, in short sides of the frame
    zoom: float = 1.11  # magnification per second (a zoom out divides by it)

    def __post_init__(self) -> None:
        if not (_is_number(self.pan) and math.isfinite(self.pan) and self.pan >= 0):
            raise ValueError(f"camera speed pan must be a finite number >= 0, got {self.pan!r}")
        if not (_is_number(self.zoom) and math.isfinite(self.zoom) and self.zoom > 0):
            raise ValueError(f"camera speed zoom must be a finite number > 0, got {self.zoom!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_camera_noise(value: float, name: str = "camera_noise") -> float:
    """A camera-noise strength: a number in [0, 1] (0: plain noise)."""
    if not _is_number(value) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1 (0: plain noise), got {value!r}")
    return float(value)


_DIRECTION = r"(?:to the )?(left|right|up|down)(?:wards?)?\b"
_ZOOM_IN = re.compile(
    r"\b(?:zoom(?:s|ing|ed)? in|push(?:es|ing|ed)? in|dolly(?:ing)? in|closes in)\b"
)
_ZOOM_OUT = re.compile(
    r"\b(?:zoom(?:s|ing|ed)? out|pull(?:s|ing|ed)? (?:back|out)|dolly(?:ing)? out|widens out)\b"
)
_PAN = re.compile(r"\b(?:pan(?:s|ning|ned)?|tilt(?:s|ing|ed)?|truck(?:s|ing)?) +" + _DIRECTION)
_VIEW = re.compile(
    r"\b(?:view|camera|shot|frame) +(?:slides|moves|drifts|glides|travels|scrolls|swings) +"
    + _DIRECTION
)
_SIDES = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


def read_camera_move(prompt: str) -> CameraMove | None:
    """The camera move a prompt names; None when it names none (see the module docstring)."""
    text = " ".join(prompt.lower().split())
    if _ZOOM_IN.search(text):
        return CameraMove(zoom=1)
    if _ZOOM_OUT.search(text):
        return CameraMove(zoom=-1)
    match = _PAN.search(text) or _VIEW.search(text)
    return CameraMove(pan=_SIDES[match.group(1)]) if match else None


def _standardize(x: Tensor) -> Tensor:
    """Each channel of ``x`` (C, H, W) to zero mean and unit variance."""
    mean = x.mean(dim=(1, 2), keepdim=True)
    return (x - mean) / x.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)


def phase_shift(x: Tensor, dx: float, dy: float) -> Tensor:
    """``x`` (C, H, W) moved by (dx, dy) pixels, circularly and by any fraction of a pixel (a
    phase shift, so white noise stays white)."""
    _, H, W = x.shape
    ky = torch.fft.fftfreq(H, dtype=torch.float64)[:, None]
    kx = torch.fft.fftfreq(W, dtype=torch.float64)[None, :]
    phase = torch.exp(-2j * math.pi * (kx * dx + ky * dy))
    return torch.fft.ifft2(torch.fft.fft2(x.double()) * phase).real.to(x.dtype)


def _canvas(base: Tensor, scale: float, generator: torch.Generator | None) -> Tensor:
    """``base`` (C, H, W) in the middle of a canvas wide enough for a view zoomed out to
    ``scale`` (< 1), the rest of it fresh noise from ``generator``."""
    C, H, W = base.shape
    pad_y, pad_x = math.ceil(H * (1 / scale - 1) / 2) + 2, math.ceil(W * (1 / scale - 1) / 2) + 2
    shape = (C, H + 2 * pad_y, W + 2 * pad_x)
    device = generator.device if generator is not None else None
    canvas = torch.randn(shape, generator=generator, device=device).to(base)
    canvas[:, pad_y : pad_y + H, pad_x : pad_x + W] = base
    return canvas


def _zoomed(canvas: Tensor, H: int, W: int, scale: float) -> Tensor:
    """The (C, H, W) view of the middle of ``canvas`` magnified by ``scale`` (at 1 the middle
    H x W itself; below 1 a wider view, shrunk to H x W)."""
    C, CH, CW = canvas.shape
    sy, sx = H / CH / scale, W / CW / scale  # the view's half extent in the canvas' [-1, 1]
    theta = torch.tensor([[sx, 0.0, 0.0], [0.0, sy, 0.0]], dtype=canvas.dtype)[None]
    grid = torch.nn.functional.affine_grid(theta, [1, C, H, W], align_corners=False)
    out = torch.nn.functional.grid_sample(
        canvas[None], grid, mode="bicubic", padding_mode="reflection", align_corners=False
    )
    return out[0]


def prime_noise(
    noise: Tensor,
    camera: CameraMove | None,
    seconds_per_frame: float,
    strength: float,
    speeds: CameraSpeeds | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``noise`` (C, t, h, w) with its latent frames after the first carrying frame 0's noise
    along the camera's path: ``strength · warp(frame 0) + sqrt(1 − strength²) · frame j``, each
    warp standardized per channel. Frame 0 is left as it is, and so is all the noise when there
    is no camera move or ``strength`` is 0. ``seconds_per_frame`` is the time between latent
    frames (the VAE's time compression over the fps). A zoom out sees past frame 0's edges: that
    noise is drawn from ``generator``, once, for the whole clip."""
    check_camera_noise(strength, "strength")
    if noise.ndim != 4:
        raise ValueError(f"noise must be (C, t, h, w), got shape {tuple(noise.shape)}")
    if camera is None or camera == CameraMove() or strength == 0 or noise.shape[1] < 2:
        return noise
    speeds = speeds or CameraSpeeds()
    _, T, H, W = noise.shape
    base, keep = noise[:, 0], math.sqrt(1 - strength**2)
    frames = [base]
    if camera.zoom:
        widest = min(1.0, speeds.zoom ** (camera.zoom * (T - 1) * seconds_per_frame))
        canvas = _canvas(base, widest, generator) if widest < 1 else base
    for j in range(1, T):
        seconds = j * seconds_per_frame
        if camera.zoom:
            warped = _zoomed(canvas, H, W, speeds.zoom ** (camera.zoom * seconds))
        else:  # the view moves along the pan, so what it shows moves the other way
            step = speeds.pan * min(H, W) * seconds
            warped = phase_shift(base, -camera.pan[0] * step, -camera.pan[1] * step)
        frames.append(strength * _standardize(warped) + keep * noise[:, j])
    return torch.stack(frames, dim=1)
