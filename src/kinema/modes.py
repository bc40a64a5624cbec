"""Generation modes as data: every mode is a timeline of frames and a list of windows over it.

A mode never gets its own sampling code. :func:`build_mode_spec` turns a :class:`Mode` and its
inputs into a :class:`ModeSpec`:

- a **timeline** of frame slots (the output video, plus overflow slots at an open end that are
  generated and then cut off, so any frame count can be made);
- **given** frames placed on it before sampling (an image, the input videos);
- **windows**, sampled in order. A window is a list of timeline slots of length
  ``1 + tc*(t - 1)`` (``tc`` = the VAE's time compression, ``t`` latent frames) and a flag per
  slot: generate it, or take it as given. The window's given slots are encoded by the VAE and
  the latent frames made only of given slots are kept clean (t = 0) through sampling; the rest
  are generated, decoded, and written back into the timeline, where later windows can use them
  as context.

Latent frame ``j`` of a window covers window frames ``[0]`` for ``j = 0`` and
``[tc*(j-1) + 1, tc*j]`` after it (the causal VAE encodes the first frame alone), so layouts
put given material on those boundaries:

=================  ==============================================================================
mode               timeline and windows (``c = 1 + tc*(k-1)`` context frames, ``k`` latents)
=================  ==============================================================================
t2v, t2i           one window, all generated (t2i: one frame). With ``image_first``, t2v is two
                   windows: frame 0 alone (an image), then the clip from it as in i2v
i2v                the image at slot 0 (latent 0 given); an optional last image fills the last
                   latent group (``tc`` frames held still)
edit               one window, all generated, SDEdit from the source video at ``strength``
extend-forward     the video, then windows ``[last c frames | tc*g new]`` until enough frames
extend-backward    windows ``[1 + tc*(g-1) new | first tc*k frames]`` leftwards from the video
connect            video A, ``n`` new frames, video B, in one window
                   ``[A's last c | n new | B's first tc*k]``
long               a t2v (or i2v) window, then extend-forward windows
loop               a t2v window, then a second window that regenerates the last ``tc*g`` frames
                   between ``[c frames before them | ... | the clip's first tc*k frames]``: the
                   end flows into the start
=================  ==============================================================================

A decoded window does not reproduce its given frames exactly (the VAE's reconstruction error),
so generated frames written next to the given ones would jump at the seam. :func:`blend_seams`
moves the generated frames near a seam by the residual (given minus decoded) of the given frame
there, fading out over a few frames (interpolated between the two sides of a short run): the
seam becomes about as smooth as the decoded window itself, and given frames stay untouched.

Everything here is pure numpy on uint8 frames ``(T, H, W, 3)``; the pipeline
(:mod:`kinema.pipeline`) encodes, samples and decodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

__all__ = [
    "GIVEN_FRAME_MODES",
    "Mode",
    "ModeInputs",
    "ModeSpec",
    "Span",
    "Window",
    "WindowGeometry",
    "blend_seams",
    "build_mode_spec",
    "default_num_frames",
    "fill_unknown",
    "given_latent_frames",
    "latent_groups",
    "loop_seam_frames",
    "mode_guidance",
    "spans_of",
]


class Mode(StrEnum):
    T2V = "t2v"  # text to video
    T2I = "t2i"  # text to image (one frame)
    I2V = "i2v"  # image as the first frame (optionally also a last frame)
    EXTEND_FORWARD = "extend-forward"  # continue a video after its end
    EXTEND_BACKWARD = "extend-backward"  # continue a video before its start
    CONNECT = "connect"  # a transition from the end of one video into the start of another
    EDIT = "edit"  # SDEdit: re-generate a video from part-way down the noise schedule
    LONG = "long"  # far beyond one window: repeated extension with overlapping context
    LOOP = "loop"  # the last frame flows back into the first

    @classmethod
    def parse(cls, value: Mode | str) -> Mode:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown mode {value!r}; valid modes: {valid}") from None


@dataclass(frozen=True)
class ModeInputs:
    """What a mode starts from; frames are uint8 at the output size."""

    image: np.ndarray | None = None  # (H, W, 3) first frame (i2v, long)
    last_image: np.ndarray | None = None  # (H, W, 3) last frame (i2v)
    video: np.ndarray | None = None  # (T, H, W, 3) to extend, edit, or connect from
    video2: np.ndarray | None = None  # (T, H, W, 3) to connect into
    strength: float | None = None  # SDEdit strength in (0, 1] (edit)
    fps: float | None = None  # the output's frame rate, the videos' rate here (named in errors)
    # t2v (and long or loop without an image): make frame 0 first, as an image, then the clip
    # from it (factorized text-to-video, as Emu Video); False: the whole clip at once
    image_first: bool = False


# Modes that continue frames they are given (the model's `given_guidance_scale` is theirs).
GIVEN_FRAME_MODES = frozenset(
    {Mode.I2V, Mode.EXTEND_FORWARD, Mode.EXTEND_BACKWARD, Mode.CONNECT, Mode.LOOP, Mode.EDIT}
)


def mode_guidance(mode: Mode | str, guidance: float, given_guidance: float | None) -> float:
    """A mode's default guidance: `given_guidance` for GIVEN_FRAME_MODES when set, else
    `guidance`. Strong guidance follows the prompt better but pulls new frames away from the
    given ones they must join."""
    if given_guidance is not None and Mode.parse(mode) in GIVEN_FRAME_MODES:
        return given_guidance
    return guidance


# Which inputs each mode needs and which it may take (everything else is refused).
REQUIRED_INPUTS: dict[Mode, tuple[str, ...]] = {
    Mode.I2V: ("image",),
    Mode.EXTEND_FORWARD: ("video",),
    Mode.EXTEND_BACKWARD: ("video",),
    Mode.CONNECT: ("video", "video2"),
    Mode.EDIT: ("video",),
}
OPTIONAL_INPUTS: dict[Mode, tuple[str, ...]] = {
    Mode.I2V: ("last_image",),
    Mode.LONG: ("image",),
    Mode.EDIT: ("strength",),
}
INPUT_FLAGS = {
    "image": "--image",
    "last_image": "--last-image",
    "video": "--video",
    "video2": "--video2",
    "strength": "--strength",
}
DEFAULT_EDIT_STRENGTH = 0.6
DEFAULT_LONG_SECONDS = 60


@dataclass(frozen=True)
class WindowGeometry:
    """The model's frame arithmetic, as the modes need it."""

    time_compression: int  # frames per latent frame after the first (the VAE's tc)
    max_window_latents: int  # most latent frames one window may have (the model's limit)
    window_latents: int  # latent frames of each window that chained modes (long, extend) use
    context_latents: int  # latent frames of context a chained window is given

    def __post_init__(self) -> None:
        if self.time_compression < 1:
            raise ValueError(f"time_compression must be >= 1, got {self.time_compression}")
        if self.context_latents < 1:
            raise ValueError(f"context_latents must be >= 1, got {self.context_latents}")
        if not self.context_latents < self.window_latents <= self.max_window_latents:
            raise ValueError(
                f"window of {self.window_latents} latent frames: it must hold the "
                f"{self.context_latents} context latent frames and at least one more, and at "
                f"most {self.max_window_latents} ({self.frames(self.max_window_latents)} frames)"
            )

    def frames(self, latents: int) -> int:
        """Frames decoded from ``latents`` latent frames: ``1 + tc*(t - 1)``."""
        return 1 + self.time_compression * (latents - 1)

    def latents(self, frames: int) -> int:
        """Latent frames of a ``frames``-frame clip: ``1 + ceil((T - 1) / tc)``."""
        return 1 + -(-(frames - 1) // self.time_compression)

    @property
    def context_before(self) -> int:
        """Frames of context at the start of a window: ``1 + tc*(k - 1)``."""
        return self.frames(self.context_latents)

    @property
    def context_after(self) -> int:
        """Frames of context at the end of a window: ``tc*k`` (whole latent groups)."""
        return self.time_compression * self.context_latents

    @property
    def max_frames(self) -> int:
        return self.frames(self.max_window_latents)


@dataclass(frozen=True)
class Window:
    """One sampling window over timeline slots."""

    frame_ids: np.ndarray  # (F,) int timeline slot of each window frame, F = 1 + tc*(t - 1)
    generate: np.ndarray  # (F,) bool: made by this window (else given: already on the timeline)
    init_frames: np.ndarray | None = None  # (n <= F, H, W, 3) SDEdit source frames (edit)
    strength: float | None = None  # SDEdit strength for init_frames

    @property
    def num_frames(self) -> int:
        return int(self.frame_ids.shape[0])


@dataclass(frozen=True)
class ModeSpec:
    """A mode as data: the timeline, what is on it before sampling, and the windows."""

    mode: Mode
    timeline_frames: int  # slots: the output plus overflow at an open end
    output_start: int  # the returned video is timeline[output_start : output_stop]
    output_stop: int
    windows: tuple[Window, ...]
    given: tuple[tuple[int, np.ndarray], ...] = field(default=())  # (first slot, (n, H, W, 3))
    loop: bool = False  # the output's last frame flows into its first

    @property
    def num_frames(self) -> int:
        return self.output_stop - self.output_start


@dataclass(frozen=True)
class Span:
    """A run of output frames with one origin."""

    start: int  # first output frame
    stop: int  # one past the last
    window: int | None  # index of the window that generated it; None: an input passed through


# ------------------------------------------------------------------------------------------------
# latent frame arithmetic
# ------------------------------------------------------------------------------------------------


def latent_groups(num_frames: int, time_compression: int) -> list[tuple[int, int]]:
    """Frame range ``[start, stop)`` each latent frame of a ``1 + tc*(t-1)``-frame window covers."""
    tc = time_compression
    if num_frames < 1 or (num_frames - 1) % tc:
        raise ValueError(f"a window has 1 + {tc}k frames, got {num_frames}")
    return [(0, 1)] + [(tc * (j - 1) + 1, tc * j + 1) for j in range(1, (num_frames - 1) // tc + 1)]


def given_latent_frames(generate: np.ndarray, time_compression: int) -> np.ndarray:
    """(t,) bool: latent frames whose frames are all given. A latent frame that mixes given and
    generated frames is a layout error (ValueError)."""
    flags = []
    for j, (a, b) in enumerate(latent_groups(len(generate), time_compression)):
        made = generate[a:b]
        if made.any() and not made.all():
            raise ValueError(
                f"latent frame {j} (window frames {a}..{b - 1}) mixes given and generated "
                "frames; given frames must fill whole latent frames"
            )
        flags.append(not made.any())
    return np.array(flags, dtype=bool)


def fill_unknown(frames: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Placeholder pixels for unknown frames, so a window can be encoded: a linear blend of the
    nearest known frames on either side (the nearest one at the ends). Known frames are kept."""
    if not known.any():
        raise ValueError("fill_unknown needs at least one known frame")
    out = frames.copy()
    index = np.flatnonzero(known)
    for i in np.flatnonzero(~known):
        after = np.searchsorted(index, i)
        left = index[after - 1] if after > 0 else index[after]
        right = index[after] if after < len(index) else index[after - 1]
        w = 0.0 if right == left else (i - left) / (right - left)
        blend = (1 - w) * frames[left].astype(np.float32) + w * frames[right].astype(np.float32)
        out[i] = np.round(blend).astype(np.uint8)
    return out


def blend_seams(
    decoded: np.ndarray, given: np.ndarray, generate: np.ndarray, fade: int
) -> np.ndarray:
    """A decoded window's frames with its generated ones corrected towards its given frames.

    ``decoded`` (F, H, W, 3) uint8 is the whole window as decoded, ``given`` (F, H, W, 3) uint8
    holds the given frames at the slots where ``generate`` (F,) is False (other slots are not
    read). The given frame on each side of a generated frame ``i`` lends it its residual
    ``given - decoded`` with weight ``1 - (d - 1) / fade`` at distance ``d``: all of it to the
    frame next to it, so the step across the seam is the decoder's own step from the given
    frame to the generated one, and none from ``fade + 1`` frames on, so a residual fades out
    over the ``fade`` frames after that one and the input's edges do not linger as ghosts where
    things have moved. Where the two sides' weights add up
    to more than 1 (a run shorter than ``fade``) they are scaled to add up to 1: a linear
    interpolation between the two residuals. Given frames (and a window without any) come back
    as decoded."""
    generate = np.asarray(generate, dtype=bool)
    if decoded.shape != given.shape or generate.shape != decoded.shape[:1]:
        raise ValueError(
            f"blend_seams needs frames of one shape and a flag per frame, got decoded "
            f"{decoded.shape}, given {given.shape}, generate {generate.shape}"
        )
    if fade < 1:
        raise ValueError(f"fade must be >= 1 frame, got {fade}")
    out = decoded.copy()
    known = np.flatnonzero(~generate)
    if len(known) == 0 or len(known) == len(generate):
        return out
    residuals: dict[int, np.ndarray] = {}

    def residual(slot: int) -> np.ndarray:
        if slot not in residuals:
            residuals[slot] = given[slot].astype(np.float32) - decoded[slot].astype(np.float32)
        return residuals[slot]

    for i in np.flatnonzero(generate):
        k = int(np.searchsorted(known, i))
        sides = [int(known[k - 1])] if k > 0 else []
        sides += [int(known[k])] if k < len(known) else []
        weights = {s: 1 - (abs(i - s) - 1) / fade for s in sides}
        weights = {s: w for s, w in weights.items() if w > 0}
        if not weights:
            continue
        scale = 1 / max(1.0, sum(weights.values()))
        correction = sum(w * scale * residual(s) for s, w in weights.items())
        out[i] = np.clip(np.rint(decoded[i] + correction), 0, 255).astype(np.uint8)
    return out


def spans_of(origin: np.ndarray) -> list[Span]:
    """Runs of equal origin (-1: input) in an (T,) int array."""
    spans, start = [], 0
    for i in range(1, len(origin) + 1):
        if i == len(origin) or origin[i] != origin[start]:
            window = int(origin[start])
            spans.append(Span(start, i, None if window < 0 else window))
            start = i
    return spans


# ------------------------------------------------------------------------------------------------
# window layouts
# ------------------------------------------------------------------------------------------------


def _window(*parts: tuple[np.ndarray, bool]) -> Window:
    """A window from consecutive (slots, generate?) parts."""
    ids = np.concatenate([np.asarray(slots, dtype=np.int64) for slots, _ in parts])
    generate = np.concatenate([np.full(len(slots), flag, dtype=bool) for slots, flag in parts])
    return Window(ids, generate)


def _range(start: int, stop: int) -> np.ndarray:
    return np.arange(start, stop, dtype=np.int64)


def _generated_window(num_frames: int, geometry: WindowGeometry) -> Window:
    """Slots 0 .. F-1, all generated, F >= num_frames the nearest window length."""
    window_frames = geometry.frames(geometry.latents(num_frames))
    return _window((_range(0, window_frames), True))


def forward_windows(start: int, num_new: int, geometry: WindowGeometry) -> list[Window]:
    """Windows that make slots ``start .. start + num_new - 1`` after given slots before
    ``start``; each is ``[c context | tc*g new]``; the last may overflow past the end."""
    tc, c = geometry.time_compression, geometry.context_before
    windows, pos, remaining = [], start, num_new
    while remaining > 0:
        g = min(geometry.window_latents - geometry.context_latents, -(-remaining // tc))
        windows.append(_window((_range(pos - c, pos), False), (_range(pos, pos + tc * g), True)))
        pos += tc * g
        remaining -= tc * g
    return windows


def backward_new_frames(num_new: int, geometry: WindowGeometry) -> list[int]:
    """New frames made by each backward window, right to left: ``1 + tc*(g - 1)`` each."""
    tc, g_max = geometry.time_compression, geometry.window_latents - geometry.context_latents
    sizes, remaining = [], num_new
    while remaining > 0:
        g = min(g_max, 1 + -(-(remaining - 1) // tc))
        sizes.append(1 + tc * (g - 1))
        remaining -= sizes[-1]
    return sizes


def backward_windows(end: int, sizes: list[int], geometry: WindowGeometry) -> list[Window]:
    """Windows ``[new | tc*k context]`` leftwards from given slots at ``end``, ``end + 1``, ..."""
    windows, pos = [], end
    for n in sizes:
        context = _range(pos, pos + geometry.context_after)
        windows.append(_window((_range(pos - n, pos), True), (context, False)))
        pos -= n
    return windows


# ------------------------------------------------------------------------------------------------
# modes
# ------------------------------------------------------------------------------------------------


def _check_single_window(mode: Mode, num_frames: int, geometry: WindowGeometry) -> None:
    if num_frames > geometry.max_frames:
        raise ValueError(
            f"{mode.value} makes at most {geometry.max_frames} frames in one window (the "
            f"model's limit), got {num_frames}; use mode long for longer videos"
        )


def _check_context(
    name: str, video: np.ndarray, need: int, geometry: WindowGeometry, fps: float | None
) -> None:
    if len(video) < need:
        # frames are counted after resampling, so a long-enough file at a higher rate can fail
        rate = "" if fps is None else f" at {fps:g} fps (the video resampled to the output's rate)"
        raise ValueError(
            f"{name} has {len(video)} frames{rate}, too short for the context: it needs at least "
            f"{need} ({geometry.context_latents} latent frames of context); give a longer video "
            f"or fewer context latent frames (--context-latents, context_latents in the API)"
        )


def _nearest_multiples(value: int, multiple: int, minimum: int) -> str:
    below = max(minimum, value // multiple * multiple)
    above = max(minimum, -(-value // multiple) * multiple)
    return f"{below}" if below == above else f"{below} or {above}"


def _t2v(inputs: ModeInputs, n: int, geometry: WindowGeometry) -> ModeSpec:
    _check_single_window(Mode.T2V, n, geometry)
    window = _generated_window(n, geometry)
    if not inputs.image_first or window.num_frames == 1:
        return ModeSpec(Mode.T2V, window.num_frames, 0, n, (window,))
    image = _generated_window(1, geometry)
    rest = Window(window.frame_ids, np.concatenate([[False], window.generate[1:]]))
    return ModeSpec(Mode.T2V, window.num_frames, 0, n, (image, rest))


def _t2i(inputs: ModeInputs, n: int, geometry: WindowGeometry) -> ModeSpec:
    if n != 1:
        raise ValueError(f"t2i makes one frame, got num_frames={n}; use t2v for videos")
    window = _generated_window(1, geometry)
    return ModeSpec(Mode.T2I, 1, 0, 1, (window,))


def _i2v(inputs: ModeInputs, n: int, geometry: WindowGeometry) -> ModeSpec:
    assert inputs.image is not None
    _check_single_window(Mode.I2V, n, geometry)
    tc = geometry.time_compression
    if inputs.last_image is None:
        if n < 2:
            raise ValueError(
                f"i2v makes frames after the image: num_frames (--frames) must be >= 2, got {n}"
            )
        window = _generated_window(n, geometry)
        generate = window.generate.copy()
        generate[0] = False
        window = Window(window.frame_ids, generate)
        return ModeSpec(Mode.I2V, window.num_frames, 0, n, (window,), ((0, inputs.image[None]),))
    minimum = 1 + 2 * tc
    if n < minimum or (n - 1) % tc:
        raise ValueError(
            f"i2v with a last image needs 1 + {tc}k frames, k >= 2 (the last image fills the "
            f"last latent frame, {tc} frames), got {n}; nearest valid: {_one_plus(n, tc, 2)}"
        )
    last = np.repeat(inputs.last_image[None], tc, axis=0)  # (tc, H, W, 3) held still
    window = _window((_range(0, 1), False), (_range(1, n - tc), True), (_range(n - tc, n), False))
    given = ((0, inputs.image[None]), (n - tc, last))
    return ModeSpec(Mode.I2V, n, 0, n, (window,), given)


def _one_plus(n: int, tc: int, min_k: int) -> str:
    """Nearest frame counts of the form 1 + tc*k, k >= min_k, to n."""
    below = max(min_k, (n - 1) // tc)
    above = max(min_k, -(-(n - 1) // tc))
    values = sorted({1 + tc * below, 1 + tc * above})
    return " or ".join(str(v) for v in values)


def _edit(inputs: ModeInputs, n: int, geometry: WindowGeometry) -> ModeSpec:
    assert inputs.video is not None
    _check_single_window(Mode.EDIT, n, geometry)
    strength = DEFAULT_EDIT_STRENGTH if inputs.strength is None else inputs.strength
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"edit strength must be in (0, 1] (1 = ignore the source), got {strength}")
    if len(inputs.video) < n:
        raise ValueError(
            f"edit of {n} frames needs a video of >= {n} frames, got {len(inputs.video)}"
        )
    window = _generated_window(n, geometry)
    window = Window(window.frame_ids, window.generate, inputs.video[:n], strength)
    return ModeSpec(Mode.EDIT, window.num_frames, 0, n, (window,))


def _extend_forward(inputs: ModeInputs, n: int, geometry: WindowGeometry) -> ModeSpec:
    video = inputs.video
    assert video is not None
    _check_context("the video", video, geometry.context_before, geometry, inputs.fps)
    windows = forward_windows(len(video), n, geometry)
    end = int(max(w.frame_ids.max() for w in windows)) + 1
    return ModeSpec(Mode.EXTEND_FORWARD, end, 0, len(video) + n, tuple(windows), ((0, video),))


def _extend_backward(inputs: ModeInputs, n: int, geometry: WindowGeometry) -> ModeSpec:
    video = inputs.video
    assert video is not None
    _check_context("the video", video, geometry.context_after, geometry, inputs.fps)
    sizes = backward_new_frames(n, geometry)
    offset = sum(sizes)  # the video starts at this slot
    windows = backward_windows(offset, sizes, geometry)
    total = offset + len(video)
    return ModeSpec(
        Mode.EXTEND_BACKWARD, total, offset - n, total, tuple(windows), ((offset, video),)
    )


def _connect(inputs: ModeInputs, n: int, geometry: WindowGeometry) -> ModeSpec:
    a, b = inputs.video, inputs.video2
    assert a is not None and b is not None
    tc = geometry.time_compression
    _check_context("video", a, geometry.context_before, geometry, inputs.fps)
    _check_context("video2", b, geometry.context_after, geometry, inputs.fps)
    room = geometry.max_frames - geometry.context_before - geometry.context_after
    if n < tc or n % tc or n > room:
        raise ValueError(
            f"connect makes a transition of whole latent frames: a multiple of {tc} frames "
            f"from {tc} to {room} (the window also holds the context), got {n}; nearest valid: "
            f"{_nearest_multiples(min(n, room), tc, tc)}"
        )
    start = len(a)
    window = _window(
        (_range(start - geometry.context_before, start), False),
        (_range(start, start + n), True),
        (_range(start + n, start + n + geometry.context_after), False),
    )
    total = len(a) + n + len(b)
    given = ((0, a), (start + n, b))
    return ModeSpec(Mode.CONNECT, total, 0, total, (window,), given)


def _long(inputs: ModeInputs, n: int, geometry: WindowGeometry) -> ModeSpec:
    first = min(n, geometry.frames(geometry.window_latents))
    starts_from_image = inputs.image is not None
    spec = _i2v(inputs, first, geometry) if starts_from_image else _t2v(inputs, first, geometry)
    windows = [*spec.windows, *forward_windows(first, n - first, geometry)]
    end = int(max(w.frame_ids.max() for w in windows)) + 1
    return ModeSpec(Mode.LONG, end, 0, n, tuple(windows), spec.given)


def loop_seam_frames(num_frames: int, geometry: WindowGeometry) -> int:
    """Frames a loop regenerates at its end: a quarter of the clip in whole latent frames (>= 1)."""
    return geometry.time_compression * max(1, (geometry.latents(num_frames) - 1) // 4)


def _loop(inputs: ModeInputs, n: int, geometry: WindowGeometry) -> ModeSpec:
    _check_single_window(Mode.LOOP, n, geometry)
    seam = loop_seam_frames(n, geometry)
    c, head = geometry.context_before, geometry.context_after
    minimum = c + seam + head
    if n < minimum:
        raise ValueError(
            f"loop needs at least {minimum} frames ({c} context, {seam} regenerated, {head} of "
            f"the clip's start), got {n}"
        )
    opening = _t2v(inputs, n, geometry)
    closing = _window(
        (_range(n - seam - c, n - seam), False),
        (_range(n - seam, n), True),
        (_range(0, head), False),
    )
    if closing.num_frames > geometry.max_frames:
        raise ValueError(
            f"loop's closing window needs {closing.num_frames} frames, more than the model's "
            f"{geometry.max_frames}; use fewer context latent frames"
        )
    windows = (*opening.windows, closing)
    return ModeSpec(Mode.LOOP, opening.timeline_frames, 0, n, windows, loop=True)


BUILDERS: dict[Mode, Callable[[ModeInputs, int, WindowGeometry], ModeSpec]] = {
    Mode.T2V: _t2v,
    Mode.T2I: _t2i,
    Mode.I2V: _i2v,
    Mode.EDIT: _edit,
    Mode.EXTEND_FORWARD: _extend_forward,
    Mode.EXTEND_BACKWARD: _extend_backward,
    Mode.CONNECT: _connect,
    Mode.LONG: _long,
    Mode.LOOP: _loop,
}


def check_inputs(mode: Mode, inputs: ModeInputs) -> None:
    """ValueError naming the missing input, or one the mode does not take."""
    required = REQUIRED_INPUTS.get(mode, ())
    allowed = set(required) | set(OPTIONAL_INPUTS.get(mode, ()))
    for name in required:
        if getattr(inputs, name) is None:
            raise ValueError(
                f"mode {mode.value} needs {name.replace('_', ' ')} ({INPUT_FLAGS[name]})"
            )
    for name in INPUT_FLAGS:
        if getattr(inputs, name) is not None and name not in allowed:
            takers = [m.value for m in Mode if name in REQUIRED_INPUTS.get(m, ())]
            takers += [m.value for m in Mode if name in OPTIONAL_INPUTS.get(m, ())]
            raise ValueError(
                f"mode {mode.value} takes no {name.replace('_', ' ')} ({INPUT_FLAGS[name]}); "
                f"modes that do: {', '.join(takers)}"
            )


def default_num_frames(
    mode: Mode, inputs: ModeInputs, clip_frames: int, fps: float, geometry: WindowGeometry
) -> int:
    """Frames a mode makes when none are asked for. ``clip_frames`` is the model's default clip
    length. Extension adds one window's worth; connect fills one window; edit keeps the source's
    length (up to the window limit); long makes DEFAULT_LONG_SECONDS seconds; a loop is at least
    as long as its closing window needs."""
    tc = geometry.time_compression
    new_latents = geometry.window_latents - geometry.context_latents
    if mode is Mode.T2I:
        return 1
    if mode is Mode.EXTEND_FORWARD:
        return tc * new_latents
    if mode is Mode.EXTEND_BACKWARD:
        return 1 + tc * (new_latents - 1)
    if mode is Mode.CONNECT:
        return tc * max(1, geometry.window_latents - 2 * geometry.context_latents)
    if mode is Mode.EDIT and inputs.video is not None:
        return min(len(inputs.video), geometry.max_frames)
    if mode is Mode.LONG:
        return round(DEFAULT_LONG_SECONDS * fps)
    if mode is Mode.LOOP:  # at least what a loop needs, when the model's clips are shorter
        shortest = geometry.context_before + loop_seam_frames(1, geometry) + geometry.context_after
        return min(max(clip_frames, shortest), geometry.max_frames)
    return min(clip_frames, geometry.max_frames)


def build_mode_spec(
    mode: Mode | str, inputs: ModeInputs, num_frames: int, geometry: WindowGeometry
) -> ModeSpec:
    """The timeline and windows of ``mode`` making ``num_frames`` new frames (t2v, t2i, i2v, edit,
    long, loop: the whole output; extend: frames added; connect: the transition)."""
    mode = Mode.parse(mode)
    check_inputs(mode, inputs)
    if num_frames < 1:
        raise ValueError(f"num_frames (--frames) must be >= 1, got {num_frames}")
    return BUILDERS[mode](inputs, num_frames, geometry)
