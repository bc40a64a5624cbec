"""The studio without a browser: server-side limits, form → request, one generation at a time,
result files and their clean-up, and the real Pipeline behind the Generator protocol (a tiny
random model saved with kinema.hub.save_model)."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema.cli import main
from kinema.compression.vae import PRESETS, CausalVAE
from kinema.hub import GenerationDefaults, ModelIndex, ModelLimits, save_model
from kinema.modes import Mode
from kinema.serve.generator import GenerationRequest, GenerationResult, GeneratorInfo
from kinema.serve.limits import (
    LimitError,
    StudioLimits,
    check_frames,
    check_guidance,
    check_prompt,
    check_seed,
    check_size,
    check_steps,
    check_strength,
    check_upload,
)
from kinema.serve.pipeline_generator import PipelineGenerator, read_video_at_size
from kinema.serve.studio import (
    BusyError,
    GenerationService,
    OutputStore,
    Studio,
    StudioForm,
    build_request,
    frames_for,
    max_seconds,
    size_for_aspect,
)
from kinema.text import TextEmbedding
from kinema.transformer import DiT
from kinema.transformer.dit import get_preset
from kinema.video import probe_video, read_image, read_video, resize_and_crop, write_video

LIMITS = StudioLimits(min_size=32, max_size=128, size_multiple=16, max_frames=33)

# --- a fake generator and a tiny real model (shared with test_serve_browser.py) -----------------


class FakeGenerator:
    """Frames whose color comes from the seed; sleeps `seconds` per step; counts concurrency."""

    def __init__(self, seconds: float = 0.0, fps: float = 8.0) -> None:
        self.info = GeneratorInfo(
            "fake",
            fps,
            size_multiple=16,
            min_size=32,
            max_size=128,
            max_frames=33,
            default_width=64,
            default_height=64,
        )
        self.seconds = seconds
        self.requests: list[GenerationRequest] = []
        self.active = self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, request: GenerationRequest, progress) -> GenerationResult:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            self.requests.append(request)
            steps = request.steps
            for i in range(steps):
                time.sleep(self.seconds)
                progress(i + 1, steps)
            rng = np.random.default_rng(request.seed)
            shape = (request.num_frames, request.height, request.width, 3)
            frames = np.zeros(shape, np.uint8) + rng.integers(0, 256, 3, dtype=np.uint8)
            for t in range(request.num_frames):  # a white square moving right
                x = t * 4 % max(1, request.width - 8)
                frames[t, 4:12, x : x + 8] = 255
            return GenerationResult(frames, self.info.fps, request.seed)
        finally:
            with self._lock:
                self.active -= 1


class TinyTextEncoder:
    """A deterministic 32-d word-hash text encoder (the debug DiT's text width)."""

    name, fingerprint, dim, max_length = "tiny-words", "tiny-words:0", 32, 16

    def encode(self, prompts: list[str]) -> TextEmbedding:
        sequences = []
        for prompt in prompts:
            words = prompt.lower().split()[: self.max_length] or [""]
            seeds = [sum(ord(c) * 31**i for i, c in enumerate(w)) % 2**31 for w in words]
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            sequences.append(torch.stack([torch.randn(self.dim, generator=g) for g in gens]))
        return TextEmbedding.from_sequences(sequences)


def save_tiny_model(directory: Path) -> Path:
    """A random debug VAE + debug DiT model folder: 16..64 px, 9-frame clips, 2 steps."""
    torch.manual_seed(0)
    vae, dit = CausalVAE(PRESETS["debug"]), DiT(get_preset("debug"))
    index = ModelIndex(
        patch=(1, 2, 2),
        defaults=GenerationDefaults(
            width=32, height=32, num_frames=9, fps=8, num_inference_steps=2
        ),
        limits=ModelLimits(min_size=16, max_size=64, max_frames=17),
    )
    return save_model(directory, vae, dit, index)


def tiny_pipeline_generator(directory: Path) -> PipelineGenerator:
    return PipelineGenerator.from_pretrained(
        save_tiny_model(directory), text_encoder=TinyTextEncoder()
    )


# --- limits -------------------------------------------------------------------------------------


def test_check_prompt() -> None:
    assert check_prompt("  a red ball  ", 20) == "a red ball"
    with pytest.raises(LimitError, match="25 characters long; the limit is 20"):
        check_prompt("x" * 25, 20)
    with pytest.raises(LimitError, match="prompt is empty"):
        check_prompt("   ", 20)
    assert check_prompt(None, 20, "negative prompt", required=False) == ""
    with pytest.raises(LimitError, match="U\\+0007"):
        check_prompt("a red\x07 ball", 20)
    assert check_prompt("two\nlines", 20) == "two\nlines"
    with pytest.raises(LimitError, match="must be text"):
        check_prompt(42, 20)


def test_check_size() -> None:
    assert check_size(64, 48, LIMITS) == (64, 48)
    with pytest.raises(LimitError, match="width 60 is not a multiple of 16; try 48 or 64"):
        check_size(60, 64, LIMITS)
    with pytest.raises(LimitError, match="height 256 is out of range: sizes go from 32 to 128"):
        check_size(64, 256, LIMITS)
    with pytest.raises(LimitError, match="whole number"):
        check_size(64.5, 64, LIMITS)
    assert check_size(64.0, 64, LIMITS) == (64, 64)  # JSON numbers arrive as floats


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (lambda v: check_steps(v, LIMITS), 0, "steps 0 is out of range: 1 to 100"),
        (lambda v: check_steps(v, LIMITS), 101, "steps 101 is out of range"),
        (lambda v: check_guidance(v, LIMITS), -1, "guidance -1 is out of range: 0 to 20"),
        (lambda v: check_guidance(v, LIMITS), float("nan"), "finite number"),
        (check_seed, -2, "seed -2 is out of range: -1 \\(random\\) or 0 to 4294967295"),
        (check_seed, 2**32, "out of range"),
        (check_seed, True, "whole number"),
        (check_strength, 0, "strength 0 is out of range"),
        (check_strength, 1.5, "strength 1.5 is out of range"),
        (lambda v: check_frames(v, 33), 34, "frames 34 is out of range: 1 to 33"),
    ],
)
def test_numbers_out_of_range(check, value, message) -> None:
    with pytest.raises(LimitError, match=message):
        check(value)


def test_numbers_in_range() -> None:
    assert check_steps(100, LIMITS) == 100 and check_guidance(0, LIMITS) == 0.0
    assert check_seed(-1) == -1 and check_seed(2**32 - 1) == 2**32 - 1
    assert check_strength(1) == 1.0 and check_frames(1, 33) == 1


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    frames = np.random.default_rng(0).integers(0, 256, (12, 48, 64, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, fps=8)


def test_check_upload(clip: Path, tmp_path: Path) -> None:
    assert check_upload(clip, LIMITS, "video") == clip
    small = StudioLimits(max_upload_bytes=1000)
    with pytest.raises(
        LimitError, match=r"video is \d+\.\d KiB; uploads are limited to 1000 bytes"
    ):
        check_upload(clip, small, "video")
    with pytest.raises(LimitError, match="has 12 frames; uploads are limited to 5 frames"):
        check_upload(clip, StudioLimits(max_upload_frames=5), "video")
    with pytest.raises(LimitError, match="is 64x48; the longer side may be at most 32"):
        check_upload(clip, StudioLimits(max_upload_side=32), "video")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(LimitError, match="not a readable image or video"):
        check_upload(text, LIMITS, "video")
    with pytest.raises(LimitError, match="upload is missing"):
        check_upload(tmp_path / "gone.png", LIMITS, "image")


# --- form → request -----------------------------------------------------------------------------


def test_size_for_aspect() -> None:
    assert size_for_aspect("1:1", 64, LIMITS) == (64, 64)
    assert size_for_aspect("16:9", 128, LIMITS) == (128, 64)  # 72 rounds to 64
    assert size_for_aspect("9:16", 64, LIMITS) == (32, 64)  # 36 rounds to 32
    with pytest.raises(LimitError, match=r"size 32 is too small for aspect 3:4: .* 3:4 is 48$"):
        size_for_aspect("3:4", 32, LIMITS)  # (32, 32) would lose the aspect
    with pytest.raises(LimitError, match="aspect '5:1' is not offered"):
        size_for_aspect("5:1", 64, LIMITS)
    with pytest.raises(LimitError, match=r"^size 70 is not a multiple of 16"):
        size_for_aspect("1:1", 70, LIMITS)
    with pytest.raises(LimitError, match=r"^size 256 is out of range"):
        size_for_aspect("16:9", 256, LIMITS)


def test_frames_for() -> None:
    limits = StudioLimits(max_frames=33, max_long_frames=100)
    assert frames_for(Mode.T2V, 4.0, 8.0, limits) == 33  # both ends
    assert frames_for(Mode.EXTEND_FORWARD, 2.0, 8.0, limits) == 16  # frames added
    assert frames_for(Mode.T2I, 99, 8.0, limits) == 1
    assert frames_for(Mode.LONG, 12.0, 8.0, limits) == 97
    with pytest.raises(LimitError, match=r"duration 5 s is 41 frames at 8 fps; .* at most 33"):
        frames_for(Mode.T2V, 5, 8.0, limits)
    # the maximum named is the mode's own: extend adds frames, so 33 frames are 4.1 s
    with pytest.raises(LimitError, match=r"at most 33 frames \(4\.1 s\)"):
        frames_for(Mode.EXTEND_FORWARD, 5, 8.0, limits)
    with pytest.raises(LimitError, match="positive number of seconds"):
        frames_for(Mode.T2V, 0, 8.0, limits)
    for mode in Mode:  # the duration slider's maximum is always accepted, a step more never
        longest = max_seconds(mode, 8.0, limits)
        if mode is not Mode.T2I:
            frames_for(mode, longest, 8.0, limits)
            with pytest.raises(LimitError, match="at most"):
                frames_for(mode, longest + 1 / 8, 8.0, limits)


def test_build_request_checks_every_field_and_the_mode_inputs(clip: Path) -> None:
    info = FakeGenerator().info
    request = build_request(StudioForm("  a red ball ", aspect="16:9", size=128), info, LIMITS)
    assert (request.prompt, request.width, request.height) == ("a red ball", 128, 64)
    assert request.mode is Mode.T2V and request.num_frames == 33
    assert 0 <= request.seed <= 2**32 - 1  # -1 was drawn
    assert build_request(StudioForm("x", seed=7), info, LIMITS).seed == 7
    # steps and guidance left out are the model's defaults, not numbers of the form's own
    defaults = build_request(
        StudioForm("x"), dataclasses.replace(info, default_steps=7, default_guidance=9.5), LIMITS
    )
    assert (defaults.steps, defaults.guidance) == (7, 9.5)
    chosen = build_request(StudioForm("x", steps=3, guidance=2.0), info, LIMITS)
    assert (chosen.steps, chosen.guidance) == (3, 2.0)
    with pytest.raises(LimitError, match="mode i2v needs image: upload one"):
        build_request(StudioForm("x", mode="i2v"), info, LIMITS)
    with pytest.raises(LimitError, match="mode 'zoom' is not one of: t2v, t2i, i2v"):
        build_request(StudioForm("x", mode="zoom"), info, LIMITS)
    # an upload the mode does not take is dropped, not checked
    request = build_request(StudioForm("x", video="/nonexistent.mp4"), info, LIMITS)
    assert request.video is None
    edit = build_request(StudioForm("x", mode="edit", video=str(clip), strength=0.3), info, LIMITS)
    assert edit.video == clip and edit.strength == 0.3
    with pytest.raises(LimitError, match="strength 0 is out of range"):
        build_request(StudioForm("x", mode="edit", video=str(clip), strength=0), info, LIMITS)
    connect = StudioForm("x", mode="connect", video=str(clip))
    with pytest.raises(LimitError, match="mode connect needs video2"):
        build_request(connect, info, LIMITS)


def test_studio_limits_tighten_to_the_model(tmp_path) -> None:
    generator = FakeGenerator()
    studio = Studio(generator, StudioLimits(max_size=512, size_multiple=8), output_dir=tmp_path)
    assert studio.limits.max_size == 128 and studio.limits.size_multiple == 16
    assert studio.limits.max_frames == 33
    with pytest.raises(LimitError, match="size 256 is out of range"):
        studio.generate(StudioForm("x", size=256))
    assert generator.requests == []  # refused before the model runs


# --- one at a time, queue, outputs --------------------------------------------------------------


def test_service_runs_one_generation_at_a_time() -> None:
    generator = FakeGenerator(seconds=0.05)
    service = GenerationService(generator, max_queue=8)
    request = GenerationRequest("x", width=32, height=32, num_frames=2, steps=2)
    threads = [
        threading.Thread(target=service.run, args=(request, lambda d, t: None)) for _ in "abc"
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(generator.requests) == 3 and generator.max_active == 1
    assert service.pending == 0


def test_service_refuses_when_the_queue_is_full() -> None:
    generator = FakeGenerator(seconds=0.3)
    service = GenerationService(generator, max_queue=0)
    request = GenerationRequest("x", width=32, height=32, num_frames=2, steps=1)
    running = threading.Thread(target=service.run, args=(request, lambda d, t: None))
    running.start()
    time.sleep(0.1)
    with pytest.raises(BusyError, match="the studio is busy: 1 generations"):
        service.run(request, lambda d, t: None)
    running.join()
    service.run(request, lambda d, t: None)  # free again


def test_output_store_cleans_up_by_count_and_age(tmp_path) -> None:
    store = OutputStore(tmp_path, keep=3, ttl_s=100)
    now = time.time()
    paths = []
    for age in (500, 50, 40, 30, 20):  # seconds old
        path = store.new_path(".mp4")
        path.write_bytes(b"x")
        os.utime(path, (now - age, now - age))
        paths.append(path)
    (tmp_path / "keep-me.txt").write_text("not ours")
    removed = store.cleanup(now)
    assert set(removed) == {paths[0], paths[1]}  # beyond the newest 3, and the 500 s old one
    assert all(p.exists() for p in paths[2:]) and (tmp_path / "keep-me.txt").exists()
    assert set(store.cleanup(now + 65)) == {paths[2]}  # now 105 s old; the others 95 and 85


def test_studio_generates_files_and_reports_progress(tmp_path) -> None:
    studio = Studio(FakeGenerator(), output_dir=tmp_path)
    steps: list[tuple[int, int]] = []
    result = studio.generate(
        StudioForm("a red ball", aspect="4:3", size=64, seconds=2, steps=3, seed=5),
        lambda done, total: steps.append((done, total)),
    )
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert result.seed == 5 and result.path.suffix == ".mp4" and result.path.parent == tmp_path
    info = probe_video(result.path)
    assert (info.width, info.height, info.num_frames, info.fps) == (64, 48, 17, 8.0)
    image = studio.generate(StudioForm("a red ball", mode="t2i", size=32))
    assert image.is_image and read_image(image.path).shape == (32, 32, 3)


def test_studio_expand(tmp_path) -> None:
    studio = Studio(FakeGenerator(), output_dir=tmp_path)
    out = studio.expand("a blue square moves right", seed=2)
    assert (
        out.expanded
        and "blue" in out.prompt
        and out.prompt == studio.expand(out.original, 2).prompt
    )
    with pytest.raises(LimitError, match="characters long"):
        studio.expand("a red ball " * 200)


def test_studio_expands_before_generating_when_asked(tmp_path) -> None:
    generator = FakeGenerator()
    studio = Studio(generator, output_dir=tmp_path)
    form = StudioForm("a pink triangle falls", size=32, seconds=1, steps=1, seed=8)
    plain = studio.generate(form)
    assert plain.expansion is None and generator.requests[-1].prompt == "a pink triangle falls"
    expanded = studio.generate(dataclasses.replace(form, expand_prompt=True))
    assert expanded.expansion.expanded and expanded.expansion.original == form.prompt
    used = generator.requests[-1].prompt
    assert used == expanded.expansion.prompt == studio.expand(form.prompt, 8).prompt
    assert "pink" in used and "floor" in used


# --- the real Pipeline behind the protocol ------------------------------------------------------


def test_read_video_at_size_matches_a_whole_read(clip) -> None:
    at_size = read_video_at_size(clip, 32, 32, fps=4)
    whole = resize_and_crop(read_video(clip, fps=4).frames, 32, 32)
    assert at_size.shape == whole.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(at_size, whole)


def test_pipeline_generator_serves_a_tiny_model(tmp_path, clip) -> None:
    generator = tiny_pipeline_generator(tmp_path / "model")
    info = generator.info
    assert (info.fps, info.size_multiple, info.min_size, info.max_size) == (8.0, 8, 16, 64)
    assert (info.max_frames, info.default_seconds, info.default_steps) == (17, 1.0, 2)
    studio = Studio(generator, output_dir=tmp_path / "out")
    steps: list[tuple[int, int]] = []
    result = studio.generate(
        StudioForm("a red ball bounces", size=32, seconds=1, steps=2, seed=3),
        lambda done, total: steps.append((done, total)),
    )
    assert steps == [(1, 2), (2, 2)] and result.seed == 3
    assert probe_video(result.path).num_frames == 9
    again = studio.generate(StudioForm("a red ball bounces", size=32, seconds=1, steps=2, seed=3))
    np.testing.assert_array_equal(read_video(again.path).frames, read_video(result.path).frames)
    # an uploaded video is read at the model's fps and size, then extended by 4 frames
    extended = studio.generate(
        StudioForm(
            "a red ball",
            mode="extend-forward",
            video=str(clip),
            size=32,
            seconds=0.5,
            steps=1,
            seed=1,
        )
    )
    assert probe_video(extended.path).num_frames == 12 + 4


def test_pipeline_generator_keeps_the_given_guidance_for_chained_windows(tmp_path, clip) -> None:
    generator = tiny_pipeline_generator(tmp_path / "model")
    generator.info = dataclasses.replace(generator.info, default_given_guidance=1.5)
    pipe, calls = generator.pipe, []

    class Recording:
        def __call__(self, *args, **kwargs):
            calls.append(kwargs)
            return pipe(*args, **kwargs)

    generator.pipe = Recording()
    request = GenerationRequest("a red ball", width=32, height=32, num_frames=9, steps=1)
    generator(dataclasses.replace(request, mode=Mode.LONG, guidance=6.0), lambda done, total: None)
    extend = dataclasses.replace(
        request, mode=Mode.EXTEND_FORWARD, num_frames=4, guidance=6.0, video=clip
    )
    generator(extend, lambda done, total: None)
    # long: the slider sets the text window, the chained windows keep the model's 1.5;
    # a mode joining given frames: the slider sets every window
    assert [(c["guidance_scale"], c["given_guidance_scale"]) for c in calls] == [
        (6.0, 1.5),
        (6.0, None),
    ]


def test_cli_serve_reports_a_missing_model(tmp_path, capsys) -> None:
    assert main(["serve", "--model", str(tmp_path / "nope"), "--port", "0"]) == 2
    assert "not a Kinema model folder" in capsys.readouterr().err
