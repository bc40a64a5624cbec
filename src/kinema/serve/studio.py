"""The studio without the web page: form values in, a checked request, one generation at a time,
result files out. `kinema.serve.app` puts a Gradio page on top; everything here is plain Python
so it can be tested (and served another way) without a browser.

    studio = Studio(generator, StudioLimits(), output_dir="outputs/studio")
    result = studio.generate(StudioForm(prompt="a red ball bounces"), progress=print)
    result.path, result.seed
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from kinema.language.expand import Expander, Expansion, WorldExpander
from kinema.modes import OPTIONAL_INPUTS, REQUIRED_INPUTS, Mode
from kinema.serve.generator import GenerationRequest, Generator, GeneratorInfo, ProgressFn
from kinema.serve.limits import (
    MAX_SEED,
    LimitError,
    StudioLimits,
    check_frames,
    check_guidance,
    check_prompt,
    check_seed,
    check_side,
    check_steps,
    check_strength,
    check_upload,
)
from kinema.video import write_video

__all__ = [
    "ASPECTS",
    "BusyError",
    "GenerationService",
    "OutputStore",
    "Studio",
    "StudioForm",
    "StudioResult",
    "build_request",
    "frames_for",
    "max_seconds",
    "size_for_aspect",
]

log = logging.getLogger(__name__)

# Aspect ratios offered on the page: name -> (width, height).
ASPECTS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "3:2": (3, 2),
    "2:3": (2, 3),
}
# Modes whose duration counts new frames next to given ones, not the whole video.
ADDED_FRAMES = (Mode.EXTEND_FORWARD, Mode.EXTEND_BACKWARD, Mode.CONNECT)
UPLOADS = ("image", "last_image", "video", "video2")


class BusyError(LimitError):
    """The queue is full."""


@dataclass(frozen=True)
class StudioForm:
    """What the page sends: the widgets' raw values (anything may be wrong)."""

    prompt: str
    mode: str = Mode.T2V.value
    negative_prompt: str = ""
    aspect: str = "1:1"
    size: int = 64  # pixels, the longer side
    seconds: float = 4.0  # t2v/i2v/edit/long/loop: the video; extend: added; connect: transition
    steps: int | None = None  # None: the model's default
    guidance: float | None = None  # None: the model's default
    seed: int = -1  # -1: draw one
    strength: float = 0.6  # edit only
    image: str | None = None  # uploaded file paths
    last_image: str | None = None
    video: str | None = None
    video2: str | None = None
    expand_prompt: bool = False  # expand the prompt (seeded with the seed) before generating


@dataclass(frozen=True)
class StudioResult:
    path: Path  # .mp4, or .png for t2i
    request: GenerationRequest
    seed: int
    num_frames: int
    fps: float
    seconds: float  # wall time of the generation
    expansion: Expansion | None = None  # when the prompt was expanded first

    @property
    def is_image(self) -> bool:
        return self.path.suffix == ".png"


def effective_limits(limits: StudioLimits, info: GeneratorInfo) -> StudioLimits:
    """The tighter of the studio's limits and the model's."""
    multiple = math.lcm(limits.size_multiple, info.size_multiple)
    return dataclasses.replace(
        limits,
        min_size=max(limits.min_size, -(-info.min_size // multiple) * multiple),
        max_size=min(limits.max_size, info.max_size) // multiple * multiple,
        size_multiple=multiple,
        max_frames=min(limits.max_frames, info.max_frames),
    )


def size_for_aspect(aspect: str, size: object, limits: StudioLimits) -> tuple[int, int]:
    """(width, height) with the longer side `size` and the shorter one from the aspect ratio,
    rounded to the size multiple; LimitError naming the smallest size that keeps the aspect when
    the shorter side would fall below the minimum or round up to a square."""
    if aspect not in ASPECTS:
        raise LimitError(f"aspect {aspect!r} is not offered; choose one of {', '.join(ASPECTS)}")
    long_side = check_side(size, limits, "size")
    aw, ah = ASPECTS[aspect]
    short, problem = _short_side(long_side, aw, ah, limits)
    if problem:
        m = limits.size_multiple
        sides = range(-(-limits.min_size // m) * m, limits.max_size + 1, m)
        fits = [s for s in sides if not _short_side(s, aw, ah, limits)[1]]
        smallest = f"is {fits[0]}" if fits else f"is above the largest size, {limits.max_size}"
        raise LimitError(
            f"size {long_side} is too small for aspect {aspect}: its shorter side would be "
            f"{short} pixels, {problem}; the smallest size that keeps {aspect} {smallest}"
        )
    return (long_side, short) if aw >= ah else (short, long_side)


def _short_side(long_side: int, aw: int, ah: int, limits: StudioLimits) -> tuple[int, str]:
    """(the shorter side for aspect aw:ah rounded to the size multiple, why it loses the aspect:
    "" when it keeps it). Raising a too-short side to the minimum would make another aspect."""
    m = limits.size_multiple
    short = round(long_side * min(aw, ah) / max(aw, ah) / m) * m
    if short < limits.min_size:
        return short, f"below the {limits.min_size}-pixel minimum"
    if aw != ah and short >= long_side:
        return short, f"a square once rounded to a multiple of {m}"
    return short, ""


def frames_for(mode: Mode, seconds: object, fps: float, limits: StudioLimits) -> int:
    """Frames a mode makes for a duration: 1 for t2i, `seconds * fps` new frames for extend and
    connect, `seconds * fps + 1` (both ends) for the others."""
    if mode is Mode.T2I:
        return 1
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise LimitError(f"duration must be a positive number of seconds, got {seconds!r}")
    if not math.isfinite(seconds):
        raise LimitError(f"duration must be finite, got {seconds!r}")
    limit = limits.max_long_frames if mode is Mode.LONG else limits.max_frames
    n = max(1, round(seconds * fps)) + (0 if mode in ADDED_FRAMES else 1)
    if n > limit:
        raise LimitError(
            f"duration {seconds:g} s is {n} frames at {fps:g} fps; mode {mode.value} makes at "
            f"most {limit} frames ({max_seconds(mode, fps, limits):.1f} s)"
        )
    return check_frames(n, limit)


def max_seconds(mode: Mode, fps: float, limits: StudioLimits) -> float:
    """The longest duration `frames_for` accepts for a mode (0 for t2i, which has none)."""
    if mode is Mode.T2I:
        return 0.0
    limit = limits.max_long_frames if mode is Mode.LONG else limits.max_frames
    return (limit if mode in ADDED_FRAMES else limit - 1) / fps


def _mode(value: object) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        valid = ", ".join(m.value for m in Mode)
        raise LimitError(f"mode {value!r} is not one of: {valid}") from None


def build_request(form: StudioForm, info: GeneratorInfo, limits: StudioLimits) -> GenerationRequest:
    """Check every field of `form` against `limits` (already tightened to the model's) and the
    mode's inputs; raises LimitError naming the first bad value. Uploads a mode does not take are
    dropped; a seed of -1 is drawn here so the result can show it."""
    mode = _mode(form.mode)
    prompt = check_prompt(form.prompt, limits.max_prompt_chars)
    negative = check_prompt(
        form.negative_prompt, limits.max_negative_chars, "negative prompt", required=False
    )
    width, height = size_for_aspect(form.aspect, form.size, limits)
    num_frames = frames_for(mode, form.seconds, info.fps, limits)
    steps = check_steps(info.default_steps if form.steps is None else form.steps, limits)
    guidance = info.guidance_for(mode) if form.guidance is None else form.guidance
    guidance = check_guidance(guidance, limits)
    seed = check_seed(form.seed)
    if seed == -1:
        seed = secrets.randbelow(MAX_SEED + 1)
    taken = set(REQUIRED_INPUTS.get(mode, ())) | set(OPTIONAL_INPUTS.get(mode, ()))
    uploads: dict[str, Path | None] = {}
    for name in UPLOADS:
        value = getattr(form, name)
        if name in REQUIRED_INPUTS.get(mode, ()) and not value:
            raise LimitError(f"mode {mode.value} needs {name.replace('_', ' ')}: upload one")
        what = name.replace("_", " ").replace("video2", "second video")
        uploads[name] = check_upload(value, limits, what) if value and name in taken else None
    strength = check_strength(form.strength) if mode is Mode.EDIT else None
    return GenerationRequest(
        prompt=prompt,
        mode=mode,
        negative_prompt=negative,
        width=width,
        height=height,
        num_frames=num_frames,
        steps=steps,
        guidance=guidance,
        seed=seed,
        strength=strength,
        **uploads,
    )


class GenerationService:
    """One generation at a time per model; at most `max_queue` requests wait behind it."""

    def __init__(self, generator: Generator, max_queue: int) -> None:
        self.generator = generator
        self.max_queue = max_queue
        self._run_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._pending = 0  # running + waiting

    @property
    def pending(self) -> int:
        return self._pending

    def run(self, request: GenerationRequest, progress: ProgressFn):
        with self._count_lock:
            if self._pending > self.max_queue:
                raise BusyError(
                    f"the studio is busy: {self._pending} generations are running or waiting "
                    f"(limit {self.max_queue + 1}); try again in a moment"
                )
            self._pending += 1
        try:
            with self._run_lock:
                return self.generator(request, progress)
        finally:
            with self._count_lock:
                self._pending -= 1


class OutputStore:
    """Result files in one folder; the oldest go when there are too many or they are too old."""

    def __init__(self, directory: str | os.PathLike[str], keep: int, ttl_s: float) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep, self.ttl_s = keep, ttl_s

    def new_path(self, suffix: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return self.directory / f"kinema-{stamp}-{secrets.token_hex(4)}{suffix}"

    def cleanup(self, now: float | None = None) -> list[Path]:
        """Delete results past the age limit, then the oldest beyond `keep`; returns them."""
        now = time.time() if now is None else now
        files = sorted(
            (p for p in self.directory.glob("kinema-*") if p.is_file()),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        doomed = [p for i, p in enumerate(files) if i >= self.keep]
        doomed += [p for p in files[: self.keep] if now - p.stat().st_mtime > self.ttl_s]
        for p in doomed:
            p.unlink(missing_ok=True)
        return doomed


class Studio:
    """A generator behind the studio's limits, queue, prompt expander and result folder."""

    def __init__(
        self,
        generator: Generator,
        limits: StudioLimits | None = None,
        expander: Expander | None = None,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.info = generator.info
        self.limits = effective_limits(limits or StudioLimits(), generator.info)
        self.expander = expander or WorldExpander()
        self.service = GenerationService(generator, self.limits.max_queue)
        if output_dir is None:
            output_dir = Path(tempfile.gettempdir()) / "kinema-studio"
        self.outputs = OutputStore(output_dir, self.limits.keep_outputs, self.limits.output_ttl_s)

    def expand(self, prompt: object, seed: object = -1) -> Expansion:
        """The expander's version of `prompt` (seed -1: a fresh draw), cut to the prompt limit at
        a sentence end so it can be generated from."""
        text = check_prompt(prompt, self.limits.max_prompt_chars)
        s = check_seed(seed)
        expansion = self.expander.expand(text, seed=None if s == -1 else s)
        if len(expansion.prompt) > self.limits.max_prompt_chars:
            cut = expansion.prompt[: self.limits.max_prompt_chars].rsplit(". ", 1)[0] + "."
            expansion = dataclasses.replace(expansion, prompt=cut)
        return expansion

    def generate(self, form: StudioForm, progress: ProgressFn | None = None) -> StudioResult:
        """Check the form, expand the prompt when asked (with the request's seed), generate with
        the queue's permission, and write the result file."""
        request = build_request(form, self.info, self.limits)
        expansion = None
        if form.expand_prompt:
            expansion = self.expand(request.prompt, request.seed)
            request = dataclasses.replace(request, prompt=expansion.prompt)
        start = time.perf_counter()
        result = self.service.run(request, progress or (lambda done, total: None))
        seconds = time.perf_counter() - start
        self.outputs.cleanup()
        frames = result.frames
        if request.mode is Mode.T2I:
            path = write_video(self.outputs.new_path(".png"), frames[:1], fps=result.fps)
        else:
            path = write_video(self.outputs.new_path(".mp4"), frames, fps=result.fps)
        log.info(
            "%s %dx%d %d frames seed %d: %s",
            *(request.mode.value, request.width, request.height, len(frames), result.seed, path),
        )
        return StudioResult(path, request, result.seed, len(frames), result.fps, seconds, expansion)
