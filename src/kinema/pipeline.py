"""The generation pipeline: every mode from one model folder, through one sampling path.

Stable API (the studio and the CLI call exactly this)::

    from kinema.pipeline import Pipeline

    pipe = Pipeline.from_pretrained("models/default")          # or (None): the shipped model
    out = pipe(
        "a red ball bounces on a blue floor",
        negative_prompt=None,          # None: the model's default ("" = no text, as in training)
        mode="t2v",                    # t2v t2i i2v extend-forward extend-backward connect edit
                                       # long loop (kinema.modes.Mode)
        image=None, last_image=None,   # i2v (last_image optional), long (optional first frame)
        video=None, video2=None,       # extend-*, edit: video; connect: video -> video2
        strength=None,                 # edit: SDEdit strength in (0, 1] (default 0.6)
        width=None, height=None, num_frames=None, fps=None,
        num_inference_steps=None,
        guidance_scale=None,           # None: the model's default for the mode
        given_guidance_scale=None,     # windows that continue frames (long's chained windows,
                                       # an image_first clip); None: guidance_scale when that is
                                       # given, else the model's given_guidance_scale
        given_guidance_min_t=None,     # those windows guide only at steps from t >= this
                                       # (0: every step; None: the model's default)
        solver=None,                   # "euler", "heun" or "stochastic" (None: the model's default)
        seed=None,                     # None or -1: a random seed (returned in out.seed)
        generator=None,                # or a torch.Generator (exclusive with seed)
        callback=None,                 # callback(StepInfo) after every sampling step
        output_type="np",              # "np": uint8 frames; "latent": latents only
        expand_prompt=False,           # True: the offline world expander; or any Expander
        image_first=None,              # t2v/long/loop: frame 0 as an image, then the clip from it
                                       # (None: the model's default)
        blend_seams=True,              # generated frames corrected towards the given frames
                                       # around them (kinema.modes.blend_seams)
        refine_steps=None,             # decoder steps fitting given latents to the given frames
                                       # (kinema.compression.refine); None: 20 where a window is
                                       # given one image at its start (i2v, long from an image,
                                       # the clip after an image_first frame), else 0
        camera_noise=None,             # windows made from text start from noise that already
                                       # moves as the prompt's camera does, this share of it
                                       # (kinema.camera_noise; 0: plain noise; None: the model's)
        held_start=None,               # windows continuing a video start at this noise level
                                       # from it held over the new frames, moved on as it moves
                                       # (kinema.held_start; 1: plain noise; None: the model's)
    )
    out.frames   # (T, H, W, 3) uint8 (None for output_type="latent")
    out.fps, out.seed, out.mode
    out.latents  # [(C, t, h, w)] per sampled window; out.given_latents: [(t,) bool] per window
    out.spans    # [Span(start, stop, window)]: which window made each run of frames (None: input)
    out.given_psnr  # dB of the decoded given frames against the inputs (None if none given)
    out.timings  # seconds: text, encode, sampling, decode, total

Images and videos are paths or uint8 arrays ((H, W, 3) / (T, H, W, 3)); they are resized and
center-cropped to the output size, and videos read from files are resampled to ``fps``.
``num_frames`` counts the frames the mode makes: the whole output for t2v/t2i/i2v/edit/long/loop,
the frames added for extend-*, the transition for connect. Input frames outside the generated
frames are passed through untouched, so an extended video starts with the very input frames.
Every ``None`` takes the model's default (``model_index.json``). Bad sizes, frame counts, modes
and inputs raise ``ValueError`` naming the value and what would be valid.

How: text is encoded once (prompt and negative prompt); :func:`kinema.modes.build_mode_spec`
turns the mode and its inputs into windows over a timeline of frames; each window is encoded
(given frames), sampled by :func:`kinema.diffusion.generate_latents` with a per-latent-frame
condition mask (given latents clean at t = 0, kept through sampling) or an SDEdit start (an
edit's source, or a window continuing a video held over its new frames,
:mod:`kinema.held_start`), and decoded in latent chunks; a given image's latent is first fitted
to the image through the decoder (:func:`default_refine_steps`; the transformer still sees the
encoder's latent, as in training); generated frames are blended into the given frames around
them (:func:`kinema.modes.blend_seams`). Windows are decoded and written back one at a time, so
memory is bounded by one window, whatever the length (the uint8 output frames are held).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import secrets
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from kinema.camera_noise import check_camera_noise, prime_noise, read_camera_move
from kinema.compression.pixels import to_frames, to_video_tensor
from kinema.compression.refine import refine_latents
from kinema.compression.vae import CausalVAE
from kinema.diffusion import draw_noise, generate_latents
from kinema.flow import token_shift
from kinema.held_start import check_held_start, content_shift, held_latents
from kinema.hub import GenerationDefaults, ModelIndex, load_model
from kinema.language.expand import Expander, load_expander
from kinema.modes import (
    Mode,
    ModeInputs,
    ModeSpec,
    Span,
    Window,
    WindowGeometry,
    build_mode_spec,
    default_num_frames,
    fill_unknown,
    given_latent_frames,
    spans_of,
)
from kinema.modes import blend_seams as blend_window_seams
from kinema.reports import check_writable
from kinema.sampling import (
    Solver,
    check_guidance_min_t,
    check_guidance_scale,
    check_shift,
    timestep_schedule,
)
from kinema.text import TextEncoder, load_text_encoder
from kinema.transformer import DiT
from kinema.transformer.experts import TimestepExperts
from kinema.video import (
    WRITE_EXTENSIONS,
    VideoError,
    check_fps,
    read_image,
    read_video,
    resize_and_crop,
    write_video,
)

__all__ = [
    "DEFAULT_CONTEXT_LATENTS",
    "DEFAULT_REFINE_STEPS",
    "OutputType",
    "Pipeline",
    "PipelineOutput",
    "Settings",
    "StepInfo",
    "check_output_path",
    "check_size",
    "default_refine_steps",
    "resolve_guidance",
    "resolve_seed",
    "save_output",
    "to_frames",
    "to_video_tensor",
]

DEFAULT_CONTEXT_LATENTS = 2  # latent frames of context a chained window is given
DEFAULT_REFINE_STEPS = 20  # decoder steps fitting a given image's latent to the image
ENCODE_CHUNK_LATENTS = 8  # VAE time chunks (latent frames) when encoding and decoding
MAX_SEED = 2**32 - 1  # the studio accepts the same range

ImageInput = str | Path | np.ndarray
VideoInput = str | Path | np.ndarray


class OutputType(StrEnum):
    NP = "np"  # uint8 frames (T, H, W, 3)
    LATENT = "latent"  # latents only; single-window modes skip decoding


@dataclass(frozen=True)
class StepInfo:
    """What a per-step callback receives."""

    step: int  # sampling steps done so far, over all windows (1 .. total_steps)
    total_steps: int
    window: int  # index of the window being sampled
    num_windows: int
    t: float  # the time the latents now sit at (0 = clean)


@dataclass(frozen=True)
class Settings:
    """A request with every default filled in: what a sidecar records to reproduce a result."""

    prompt: str
    negative_prompt: str
    mode: Mode
    width: int
    height: int
    num_frames: int  # frames the mode makes (see the module docstring)
    fps: float
    num_inference_steps: int
    guidance_scale: float  # windows made from text alone
    given_guidance_scale: float  # windows given frames to continue (see resolve_guidance)
    given_guidance_min_t: float  # ... guided only at steps from t >= this (0: every step)
    shift: float | None  # None: the token-count shift of training
    solver: Solver
    seed: int
    strength: float | None
    context_latents: int
    window_frames: int  # frames of each chained window (long, extend)
    model: str | None  # the model folder
    original_prompt: str | None = None  # the user's prompt when `prompt` is its expansion
    image_first: bool = False  # t2v, long, loop: frame 0 as an image first, then the clip from it
    blend_seams: bool = True  # generated frames corrected towards the given frames around them
    refine_steps: int | None = None  # given latents fitted to the given frames (None: auto)
    camera_noise: float = 0.0  # windows from text start from noise moving as the camera does
    held_start: float = 1.0  # windows continuing a video start at this t from it held (1: off)

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["mode"], d["solver"] = self.mode.value, self.solver.value
        return d


@dataclass
class PipelineOutput:
    frames: np.ndarray | None  # (T, H, W, 3) uint8; None for output_type="latent"
    fps: float
    seed: int
    mode: Mode
    latents: list[Tensor]  # (C, t, h, w) normalized latents of each window, on the CPU
    given_latents: list[Tensor]  # (t,) bool per window: latent frames given clean
    spans: list[Span]  # runs of output frames by origin (window index; None: input frames)
    given_psnr: float | None  # decoded given frames vs the inputs, dB; None if none
    timings: dict[str, float]  # seconds: text, encode, sampling, decode, total
    loop: bool  # the last frame flows into the first (mode loop)
    settings: Settings  # the request with every default filled in

    def record(self) -> dict[str, object]:
        """JSON-ready description: the settings, spans, given-frame PSNR and timings."""
        return {
            **self.settings.to_dict(),
            "frames": self.num_frames,
            "spans": [dataclasses.asdict(span) for span in self.spans],
            "given_psnr": self.given_psnr,
            "timings": self.timings,
        }

    @property
    def num_frames(self) -> int:
        return self.spans[-1].stop if self.spans else 0


# ------------------------------------------------------------------------------------------------
# checks and small conversions
# ------------------------------------------------------------------------------------------------


def _nearest_valid(value: int, multiple: int, low: int, high: int) -> str:
    """The valid values (multiples of `multiple` in [low, high]) nearest `value`."""
    first = -(-low // multiple) * multiple
    last = high // multiple * multiple
    below = min(max(value // multiple * multiple, first), last)
    above = max(min(-(-value // multiple) * multiple, last), first)
    return str(below) if below == above else f"{below} or {above}"


def check_size(
    width: int,
    height: int,
    multiples: tuple[int, int],
    min_size: int,
    max_size: int,
    why: str = "VAE space compression x patch",
) -> None:
    """ValueError unless width and height are multiples of (mh, mw) within [min, max]."""
    for name, value, multiple in (("width", width, multiples[1]), ("height", height, multiples[0])):
        low = -(-min_size // multiple) * multiple
        high = max_size // multiple * multiple
        if not isinstance(value, int) or value % multiple or not low <= value <= high:
            raise ValueError(
                f"{name} {value!r} is not one this model can make: it must be a multiple of "
                f"{multiple} ({why}) from {low} to {high}; nearest valid {name}: "
                f"{_nearest_valid(int(value), multiple, low, high)}"
            )


def _check_int(value: object, name: str, low: int, *, or_none: bool = False) -> None:
    """ValueError naming ``name`` unless ``value`` is an int >= ``low`` (a bool is not one), or
    None where ``or_none``."""
    if or_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        valid = f"{'None or ' if or_none else ''}an int >= {low}"
        raise ValueError(f"{name} must be {valid}, got {value!r}")


def _check_bool(value: object, name: str) -> None:
    """ValueError naming ``name`` unless ``value`` is True or False (not merely truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def resolve_seed(
    seed: int | None, generator: torch.Generator | None
) -> tuple[int, torch.Generator]:
    """(seed used, CPU generator): a given generator, a seeded one, or a random seed (-1/None)."""
    if generator is not None:
        if seed is not None and seed != -1:
            raise ValueError("pass either seed or generator, not both")
        return generator.initial_seed(), generator
    if seed is None or seed == -1:
        seed = secrets.randbelow(MAX_SEED + 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an int in [0, {MAX_SEED}] (or -1 for random), got {seed!r}")
    return seed, torch.Generator().manual_seed(seed)


def load_image(value: ImageInput, width: int, height: int, name: str) -> np.ndarray:
    """An image path or (H, W, 3) uint8 array, resized and cropped to (height, width, 3)."""
    if isinstance(value, str | Path):
        try:
            value = read_image(value)
        except VideoError as e:
            raise ValueError(f"cannot read {name}: {e}") from e
    image = np.asarray(value)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{name} must be an (H, W, 3) uint8 array or a path, got {image.dtype} {image.shape}"
        )
    return resize_and_crop(image[None], height, width)[0]


def load_video(value: VideoInput, width: int, height: int, fps: float, name: str) -> np.ndarray:
    """A video path (read at `fps`) or (T, H, W, 3) uint8 array, resized and cropped."""
    if isinstance(value, str | Path):
        try:
            value = read_video(value, fps=fps).frames
        except VideoError as e:
            raise ValueError(f"cannot read {name}: {e}") from e
    video = np.asarray(value)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(
            f"{name} must be a (T, H, W, 3) uint8 array or a path, got {video.dtype} {video.shape}"
        )
    return resize_and_crop(video, height, width)


def resolve_guidance(
    defaults: GenerationDefaults,
    mode: Mode,
    guidance_scale: float | None,
    given_guidance_scale: float | None,
) -> dict[str, float]:
    """The guidance of a call's windows made from text alone and of those given frames to
    continue. Left out, each is the model's: the mode's default (``given_guidance_scale`` for the
    modes that join given frames) and ``given_guidance_scale``; so `long`'s first window follows
    the prompt at the text-to-video guidance and its chained windows, which continue the frames
    before them, get the gentler guidance of extend. A ``guidance_scale`` given alone sets both."""
    guidance = defaults.guidance_for(mode) if guidance_scale is None else guidance_scale
    if given_guidance_scale is None:
        given_guidance_scale = guidance
        if guidance_scale is None and defaults.given_guidance_scale is not None:
            given_guidance_scale = defaults.given_guidance_scale
    return {"guidance_scale": guidance, "given_guidance_scale": given_guidance_scale}


def default_refine_steps(given: np.ndarray) -> int:
    """Decoder steps fitting a window's given latents (``given`` (t,) bool) to its given frames
    when the caller leaves ``refine_steps`` out: DEFAULT_REFINE_STEPS where the window is given
    one image at its start (the first latent frame alone; a step decodes one frame), else 0:
    refining later latent frames decodes the window up to them at every step."""
    return DEFAULT_REFINE_STEPS if image_at_start(given) else 0


def image_at_start(given: np.ndarray) -> bool:
    """Whether a window's given latent frames (``given`` (t,) bool) are one image at its start:
    the first latent frame alone (i2v, long from an image, the clip after an image_first frame)."""
    return bool(given[0]) and not given[1:].any()


def steps_to_run(steps: int, shift: float, strength: float | None) -> int:
    """Sampling steps a window takes: all, or SDEdit's part of the schedule below strength."""
    if strength is None:
        return steps
    return int((timestep_schedule(steps, shift) < strength).sum())


# ------------------------------------------------------------------------------------------------
# the pipeline
# ------------------------------------------------------------------------------------------------


@dataclass
class _Run:
    """Per-call state shared by the windows of one generation."""

    settings: Settings
    spec: ModeSpec
    text: Tensor  # (L, D) prompt tokens
    negative_text: Tensor  # (L', D) negative prompt tokens (L' = 0: no text)
    generator: torch.Generator
    decode_last: bool
    callback: Callable[[StepInfo], None] | None
    total_steps: int = 0
    steps_done: int = 0


class Pipeline:
    """VAE + DiT + text encoder, and the model's defaults and limits (from its model folder)."""

    def __init__(
        self,
        vae: CausalVAE,
        dit: DiT | TimestepExperts,
        index: ModelIndex,
        text_encoder: TextEncoder,
        device: torch.device | str = "cpu",
        model_dir: str | Path | None = None,
    ) -> None:
        if text_encoder.dim != dit.config.text_dim:
            raise ValueError(
                f"text encoder {text_encoder.name!r} gives {text_encoder.dim}-d tokens but the "
                f"transformer takes {dit.config.text_dim}-d text tokens"
            )
        channels = vae.config.latent_channels * math.prod(index.patch)
        if channels != dit.config.in_dim:
            raise ValueError(
                f"the VAE's {vae.config.latent_channels} latent channels x patch {index.patch} "
                f"make {channels}-d tokens but the transformer takes {dit.config.in_dim}"
            )
        self.device = torch.device(device)
        self.vae = vae.to(self.device).eval()
        self.dit = dit.to(self.device).eval()
        self.index = index
        self.text_encoder = text_encoder
        self.model_dir = None if model_dir is None else Path(model_dir)

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path | None = None,
        *,
        text_encoder: TextEncoder | None = None,
        device: torch.device | str = "cpu",
        verify: bool = True,
    ) -> Pipeline:
        """Load a model folder (default: the shipped ``models/default``), hash-checked. The text
        encoder named in its index is loaded unless one is passed."""
        model = load_model(directory, device=device, verify=verify)
        if text_encoder is None:
            text_encoder = load_text_encoder(
                model.index.text_encoder, max_length=model.index.text_max_length, device=device
            )
        return cls(model.vae, model.dit, model.index, text_encoder, device, model.directory)

    # -------------------------------------------------------------------- sizes and geometry

    @property
    def size_multiples(self) -> tuple[int, int]:
        """(height, width) multiples: VAE space compression x patch."""
        sc = self.vae.config.space_compression
        return sc * self.index.patch[1], sc * self.index.patch[2]

    def geometry(
        self, window_frames: int | None = None, context_latents: int = DEFAULT_CONTEXT_LATENTS
    ) -> WindowGeometry:
        """Frame arithmetic of this model: windows of at most the model's `max_frames`; chained
        windows of `window_frames` (default: the model's clip length, rounded down to 1 + tc*k)."""
        _check_int(context_latents, "context_latents", 1)
        _check_int(window_frames, "window_frames", 1, or_none=True)
        tc = self.vae.config.time_compression
        max_latents = (self.index.limits.max_frames - 1) // tc + 1
        if window_frames is None:
            frames = min(self.index.defaults.num_frames, self.index.limits.max_frames)
            window_latents = (frames - 1) // tc + 1
        else:
            window_latents = (window_frames - 1) // tc + 1
            if window_frames < 1 or (window_frames - 1) % tc or window_latents > max_latents:
                low, high = 1 + tc * max(0, (window_frames - 1) // tc), 1 + tc * (max_latents - 1)
                raise ValueError(
                    f"window_frames must be 1 + {tc}k and at most {high}, got {window_frames}; "
                    f"nearest valid: {min(low, high)}"
                )
        return WindowGeometry(tc, max_latents, window_latents, context_latents)

    # -------------------------------------------------------------------- VAE

    @torch.inference_mode()
    def encode_video(self, frames: np.ndarray) -> Tensor:
        """uint8 frames (T, H, W, 3) -> normalized latents (C, t, h, w) on the device."""
        video = to_video_tensor(frames).to(self.device)  # (1, 3, T, H, W)
        chunk = ENCODE_CHUNK_LATENTS * self.vae.config.time_compression
        return self.vae.encode(video, chunk_frames=chunk)[0]

    @torch.inference_mode()
    def decode_latents(self, latents: Tensor, num_frames: int | None = None) -> np.ndarray:
        """Normalized latents (C, t, h, w) -> uint8 frames (T, H, W, 3), decoded in time chunks."""
        video = self.vae.decode(
            latents[None].to(self.device), num_frames, chunk_frames=ENCODE_CHUNK_LATENTS
        )  # (1, 3, T, H, W)
        return to_frames(video)

    # -------------------------------------------------------------------- generation

    @torch.inference_mode()
    def __call__(
        self,
        prompt: str,
        negative_prompt: str | None = None,
        *,
        mode: Mode | str = Mode.T2V,
        image: ImageInput | None = None,
        last_image: ImageInput | None = None,
        video: VideoInput | None = None,
        video2: VideoInput | None = None,
        strength: float | None = None,
        width: int | None = None,
        height: int | None = None,
        num_frames: int | None = None,
        fps: float | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        given_guidance_scale: float | None = None,
        given_guidance_min_t: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        shift: float | None = None,
        solver: Solver | str | None = None,
        context_latents: int = DEFAULT_CONTEXT_LATENTS,
        window_frames: int | None = None,
        output_type: OutputType | str = OutputType.NP,
        callback: Callable[[StepInfo], None] | None = None,
        expand_prompt: bool | Expander = False,
        image_first: bool | None = None,
        blend_seams: bool = True,
        refine_steps: int | None = None,
        camera_noise: float | None = None,
        held_start: float | None = None,
    ) -> PipelineOutput:
        """Generate a video (see the module docstring for every argument)."""
        start = time.perf_counter()
        # 1. defaults, sizes, seed and the prompt (expanded if asked)
        d = self.index.defaults
        output_type = _parse_output_type(output_type)
        seed, generator = resolve_seed(seed, generator)
        original_prompt = None
        if expand_prompt:
            expander = load_expander() if expand_prompt is True else expand_prompt
            expansion = expander.expand(prompt, seed)
            for warning in expansion.warnings:
                warnings.warn(f"prompt expansion: {warning}", stacklevel=2)
            if expansion.expanded:
                original_prompt, prompt = prompt, expansion.prompt
        geometry = self.geometry(window_frames, context_latents)
        settings = Settings(
            prompt=prompt,
            negative_prompt=d.negative_prompt if negative_prompt is None else negative_prompt,
            mode=Mode.parse(mode),
            width=d.width if width is None else width,
            height=d.height if height is None else height,
            num_frames=0,  # known once the inputs are read
            fps=check_fps(d.fps if fps is None else fps),  # the writer's range
            num_inference_steps=d.num_inference_steps
            if num_inference_steps is None
            else num_inference_steps,
            **resolve_guidance(d, Mode.parse(mode), guidance_scale, given_guidance_scale),
            given_guidance_min_t=check_guidance_min_t(
                d.given_guidance_min_t if given_guidance_min_t is None else given_guidance_min_t,
                "given_guidance_min_t",
            ),
            shift=d.shift if shift is None else shift,
            solver=Solver.parse(d.solver if solver is None else solver),
            seed=seed,
            strength=strength,
            context_latents=context_latents,
            window_frames=geometry.frames(geometry.window_latents),
            model=None if self.model_dir is None else str(self.model_dir),
            original_prompt=original_prompt,
            image_first=d.image_first if image_first is None else image_first,
            blend_seams=blend_seams,
            refine_steps=refine_steps,
            camera_noise=d.camera_noise if camera_noise is None else camera_noise,
            held_start=d.held_start if held_start is None else held_start,
        )
        self._check_settings(settings)
        _check_int(num_frames, "num_frames", 1, or_none=True)
        # 2. inputs, and the mode's timeline and windows
        inputs = self._read_inputs(settings, image, last_image, video, video2)
        if num_frames is None:
            num_frames = default_num_frames(
                settings.mode, inputs, d.num_frames, settings.fps, geometry
            )
        settings = dataclasses.replace(settings, num_frames=num_frames)
        spec = build_mode_spec(settings.mode, inputs, num_frames, geometry)
        # 3. text, once
        text_start = time.perf_counter()
        text, negative_text = self.encode_text(prompt, settings.negative_prompt)
        timings = {"text": time.perf_counter() - text_start, "encode": 0.0}
        timings |= {"sampling": 0.0, "decode": 0.0}
        # 4. the windows in order, each decoded and written onto the timeline
        run = _Run(
            settings, spec, text, negative_text, generator, output_type is OutputType.NP, callback
        )
        output = self._generate(run, timings)
        timings["total"] = time.perf_counter() - start
        return output

    def _check_settings(self, s: Settings) -> None:
        limits, sc, patch = self.index.limits, self.vae.config.space_compression, self.index.patch
        why = f"VAE space compression {sc} x patch {patch[2]} (width), {patch[1]} (height)"
        if patch[1] == patch[2]:
            why = f"VAE space compression {sc} x patch {patch[2]}"
        check_size(s.width, s.height, self.size_multiples, limits.min_size, limits.max_size, why)
        if not isinstance(s.negative_prompt, str):
            raise ValueError(
                f"negative_prompt must be a string ('': no text) or None, got {s.negative_prompt!r}"
            )
        strength = s.strength
        number = isinstance(strength, numbers.Real) and not isinstance(strength, bool)
        if strength is not None and not (number and 0 < strength <= 1):
            raise ValueError(
                f"strength must be None or a number in (0, 1] (1 = ignore the source), "
                f"got {strength!r}"
            )
        _check_bool(s.image_first, "image_first")
        _check_bool(s.blend_seams, "blend_seams")
        check_guidance_scale(s.guidance_scale, "guidance_scale")
        check_guidance_scale(s.given_guidance_scale, "given_guidance_scale")
        check_shift(s.shift)
        check_camera_noise(s.camera_noise)
        check_held_start(s.held_start)
        _check_int(s.num_inference_steps, "num_inference_steps", 1)
        _check_int(s.refine_steps, "refine_steps", 0, or_none=True)

    def _read_inputs(
        self,
        s: Settings,
        image: ImageInput | None,
        last_image: ImageInput | None,
        video: VideoInput | None,
        video2: VideoInput | None,
    ) -> ModeInputs:
        """Images and videos at the output size (videos read from files at the output fps)."""
        size = (s.width, s.height)
        return ModeInputs(
            image=None if image is None else load_image(image, *size, "image"),
            last_image=None if last_image is None else load_image(last_image, *size, "last image"),
            video=None if video is None else load_video(video, *size, s.fps, "video"),
            video2=None if video2 is None else load_video(video2, *size, s.fps, "video2"),
            strength=s.strength,
            fps=s.fps,
            image_first=s.image_first,
        )

    def encode_text(self, prompt: str, negative_prompt: str) -> tuple[Tensor, Tensor]:
        """(prompt tokens (L, D), negative tokens (L', D)) on the device; an empty negative
        prompt is no text at all (L' = 0), as the model saw text dropped in training."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        prompts = [prompt, negative_prompt] if negative_prompt else [prompt]
        sequences = self.text_encoder.encode(prompts).sequences()  # [(n_i, D)]
        text = sequences[0].float().to(self.device)
        if negative_prompt:
            return text, sequences[1].float().to(self.device)
        return text, text.new_zeros(0, text.shape[1])

    def _generate(self, run: _Run, timings: dict[str, float]) -> PipelineOutput:
        spec = run.spec
        timeline = np.zeros(
            (spec.timeline_frames, run.settings.height, run.settings.width, 3), np.uint8
        )
        filled = np.zeros(spec.timeline_frames, bool)
        origin = np.full(spec.timeline_frames, -1, np.int64)  # window that made each slot
        for slot, frames in spec.given:
            timeline[slot : slot + len(frames)] = frames
            filled[slot : slot + len(frames)] = True
        run.total_steps = sum(self._window_steps(run, w) for w in spec.windows)
        latents, given_masks, errors = [], [], []
        for w, window in enumerate(spec.windows):
            if not filled[window.frame_ids[~window.generate]].all():
                raise AssertionError(f"window {w} is given frames that are not made yet")
            z, given = self._sample_window(run, w, window, timeline, timings)
            latents.append(z.cpu())
            given_masks.append(torch.from_numpy(given))
            slots = window.frame_ids[window.generate]
            origin[slots] = w
            if w == len(spec.windows) - 1 and not run.decode_last:
                break
            decode_start = time.perf_counter()
            frames = self.decode_latents(z)  # (F, H, W, 3)
            timings["decode"] += time.perf_counter() - decode_start
            kept = ~window.generate
            if kept.any():
                diff = frames[kept].astype(np.float64) - timeline[window.frame_ids[kept]]
                errors.append((float(np.square(diff).sum()), diff.size))
                if run.settings.blend_seams:
                    fade = self.vae.config.time_compression  # one latent frame's worth
                    given = timeline[window.frame_ids]
                    frames = blend_window_seams(frames, given, window.generate, fade)
            timeline[slots], filled[slots] = frames[window.generate], True
        out = slice(spec.output_start, spec.output_stop)
        return PipelineOutput(
            frames=timeline[out].copy() if run.decode_last else None,
            fps=run.settings.fps,
            seed=run.settings.seed,
            mode=spec.mode,
            latents=latents,
            given_latents=given_masks,
            spans=spans_of(origin[out]),
            given_psnr=_psnr(errors),
            timings=timings,
            loop=spec.loop,
            settings=run.settings,
        )

    def _encode_given(self, frames: np.ndarray, generate: np.ndarray, latent_frames: int) -> Tensor:
        """Latents (C, t, h, w) of a window's frames for its given latent frames. Only frames up
        to the last given one are encoded: the VAE is causal, so later frames change no latent
        made of given frames (an image to video encodes one frame, not the window). The latent
        frames after them are zeros, which sampling never reads."""
        stop = int(np.flatnonzero(~generate)[-1]) + 1
        z = self.encode_video(frames[:stop])  # (C, t', h, w)
        return torch.nn.functional.pad(z, (0, 0, 0, 0, 0, latent_frames - z.shape[1]))

    def _refine_given(
        self,
        latents: Tensor,
        frames: np.ndarray,
        generate: np.ndarray,
        given: np.ndarray,
        steps: int,
    ) -> Tensor:
        """The given latent frames (``given`` (t,)) of a window's ``latents`` (C, t, h, w) fitted
        by ``steps`` decoder steps to the window's given ``frames`` (F, H, W, 3)
        (:func:`kinema.compression.refine.refine_latents`); other latent frames unchanged."""
        stop = int(np.flatnonzero(~generate)[-1]) + 1
        video = to_video_tensor(frames[:stop]).to(self.device)  # (1, 3, stop, H, W)
        kept, movable = torch.from_numpy(~generate[:stop]), torch.from_numpy(given.copy())
        return refine_latents(self.vae, latents[None], video, kept, movable, steps)[0]

    def _latent_shape(self, run: _Run, window: Window) -> tuple[int, int, int, int]:
        cfg = self.vae.config
        return cfg.latent_shape(window.num_frames, run.settings.height, run.settings.width)

    def _shift(self, run: _Run, shape: tuple[int, int, int, int]) -> float:
        if run.settings.shift is not None:
            return run.settings.shift
        pt, ph, pw = self.index.patch
        return token_shift(shape[1] // pt * (shape[2] // ph) * (shape[3] // pw))

    def _window_steps(self, run: _Run, window: Window) -> int:
        shift = self._shift(run, self._latent_shape(run, window))
        return steps_to_run(run.settings.num_inference_steps, shift, self._start(run, window))

    def _held_velocity(self, frames: np.ndarray, generate: np.ndarray) -> tuple[float, float]:
        """How far the given video's content moves per latent frame, in latent pixels, where the
        window makes frames on one side of it: over the last (or first) latent frame's worth of
        given frames (kinema.held_start.content_shift). (0, 0) between two given videos."""
        tc, sc = self.vae.config.time_compression, self.vae.config.space_compression
        known = np.flatnonzero(~generate)
        if generate[known[-1] + 1 :].any():  # new frames after the given ones
            a, b = int(known[-1]) - tc, int(known[-1])
        elif generate[: known[0]].any():  # new frames before them
            a, b = int(known[0]), int(known[0]) + tc
        else:
            return 0.0, 0.0
        if a < 0 or b >= len(generate) or generate[a] or generate[b]:
            return 0.0, 0.0
        dx, dy = content_shift(torch.from_numpy(frames[a]), torch.from_numpy(frames[b]))
        return dx / sc, dy / sc

    def _start(self, run: _Run, window: Window) -> float | None:
        """Where a window's sampling starts: SDEdit's strength for an edit, the held start for a
        window that continues a video (kinema.held_start), None (pure noise at t = 1) otherwise.
        A window given one image at its start is not held: an image held still over the clip
        made image to video's seams rougher (docs/benchmarks.md, "Held start")."""
        if window.init_frames is not None:
            return window.strength
        given = given_latent_frames(window.generate, self.vae.config.time_compression)
        if given.any() and not image_at_start(given) and run.settings.held_start < 1:
            return run.settings.held_start
        return None

    def _sample_window(
        self, run: _Run, w: int, window: Window, timeline: np.ndarray, timings: dict[str, float]
    ) -> tuple[Tensor, np.ndarray]:
        """Encode the window's given frames (and SDEdit source), sample its latents (C, t, h, w);
        returns them and the (t,) mask of latent frames given clean."""
        shape = self._latent_shape(run, window)
        if shape[1] % self.index.patch[0]:
            raise ValueError(
                f"a window of {shape[1]} latent frames does not divide into the model's temporal "
                f"patch {self.index.patch[0]}; choose another number of frames"
            )
        encode_start = time.perf_counter()
        given = given_latent_frames(window.generate, self.vae.config.time_compression)  # (t,)
        given_latents = refined = x_init = None
        if given.any():
            frames = fill_unknown(timeline[window.frame_ids], ~window.generate)  # (F, H, W, 3)
            given_latents = self._encode_given(frames, window.generate, shape[1])
            steps = run.settings.refine_steps
            steps = default_refine_steps(given) if steps is None else steps
            if steps:
                refined = self._refine_given(given_latents, frames, window.generate, given, steps)
        if window.init_frames is not None:
            x_init = self.encode_video(window.init_frames)  # (C, t, h, w)
        timings["encode"] += time.perf_counter() - encode_start

        def on_step(i: int, t: float, x: Tensor) -> None:
            run.steps_done += 1
            if run.callback is not None:
                info = StepInfo(run.steps_done, run.total_steps, w, len(run.spec.windows), t)
                run.callback(info)

        sample_start = time.perf_counter()
        settings, continues = run.settings, bool(given.any())  # a window given frames
        noise = None
        # a window from text alone starts moving as the prompt's camera does; not a loop's, whose
        # end must come back to its start (a primed pan made its closing seam rougher)
        if settings.camera_noise and not continues and x_init is None and not run.spec.loop:
            noise = prime_noise(
                draw_noise(shape, self.index.patch, run.generator),
                read_camera_move(settings.prompt),
                self.vae.config.time_compression / settings.fps,
                settings.camera_noise,
                self.index.camera_speeds,
                run.generator,
            )
        start = self._start(run, window)
        if continues and x_init is None and start is not None:  # a held start
            velocity = self._held_velocity(frames, window.generate)
            x_init = held_latents(given_latents, torch.from_numpy(given), velocity)
        guidance = settings.given_guidance_scale if continues else settings.guidance_scale
        guidance_min_t = settings.given_guidance_min_t if continues else 0.0
        z = generate_latents(
            self.dit,
            run.text,
            run.negative_text,
            shape,
            self.index.patch,
            steps=run.settings.num_inference_steps,
            guidance_scale=guidance,
            guidance_min_t=guidance_min_t,
            solver=run.settings.solver,
            shift=self._shift(run, shape),
            given=given_latents,
            given_frames=torch.from_numpy(given) if given_latents is not None else None,
            generator=run.generator,
            x_init=x_init,
            sde_edit_strength=start,
            callback=on_step,
            noise=noise,
        )
        timings["sampling"] += time.perf_counter() - sample_start
        if refined is not None:  # the transformer saw the encoder's latents; the decoder gets these
            kept = torch.from_numpy(given).to(z.device)
            z[:, kept] = refined[:, kept].to(z)
        return z, given


def check_output_path(path: str | Path) -> Path:
    """``path`` as a Path if `save_output` can write there (a known extension; a ``.png`` name
    with a ``%`` is a printf pattern with one int field, e.g. ``frame_%05d.png``; not a folder;
    the rest as `kinema.reports.check_writable`); ValueError naming what is wrong otherwise.
    Callers check before generating, so a bad path never costs a generation."""
    path = Path(path)
    if path.suffix.lower() not in WRITE_EXTENSIONS:
        raise ValueError(f"cannot write {path}: use one of {', '.join(WRITE_EXTENSIONS)}")
    if _is_png_pattern(path):
        try:
            names = {path.name % 0, path.name % 1}
        except (TypeError, ValueError):
            names = set()
        if len(names) != 2 or any(os.sep in n or n.startswith(".") for n in names):
            raise ValueError(
                f"cannot write {path}: a .png name with '%' must be a pattern with one int "
                f"field, like 'frame_%05d.png' ('%%' for a literal %)"
            )
    return check_writable(path, "cannot write")  # no folder in its place, a writable folder


def _is_png_pattern(path: Path) -> bool:
    """A ``.png`` path whose name is a printf pattern: one PNG per frame (kinema.video)."""
    return path.suffix.lower() == ".png" and "%" in path.name


def save_output(output: PipelineOutput, path: str | Path, **extra: object) -> tuple[Path, Path]:
    """Write the frames by extension and a JSON sidecar ``NAME.json`` beside them; returns both
    paths. ``.mp4`` (H.264) or ``.gif``; ``.png``: one image, or ``NAME_00000.png``, ... for
    several frames (a name with a printf field, ``clip_%03d.png``, is used as is). ``extra``
    (e.g. input paths) is added to the sidecar."""
    if output.frames is None:
        raise ValueError("this output has no frames (output_type='latent'); nothing to write")
    path = check_output_path(path)
    suffix = path.suffix.lower()
    target = path
    if suffix == ".png" and len(output.frames) > 1 and not _is_png_pattern(path):
        target = path.with_name(f"{path.stem}_%05d.png")
    write_video(target, output.frames, fps=output.fps)
    sidecar = path.with_suffix(".json")
    record = {**output.record(), **extra, "output": str(target)}
    sidecar.write_text(json.dumps(record, indent=2) + "\n")
    return target, sidecar


def _parse_output_type(value: OutputType | str) -> OutputType:
    try:
        return OutputType(value)
    except ValueError:
        valid = ", ".join(o.value for o in OutputType)
        raise ValueError(f"unknown output_type {value!r}; valid: {valid}") from None


def _psnr(errors: list[tuple[float, int]]) -> float | None:
    """PSNR (dB, 8-bit) from (sum of squared errors, count) pairs; None without any."""
    count = sum(n for _, n in errors)
    if count == 0:
        return None
    mse = sum(e for e, _ in errors) / count
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)
