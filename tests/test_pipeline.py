"""The generation pipeline end to end on a tiny random model: every mode, kept frames, seeds,
callbacks, errors, the `kinema generate` command and `kinema bench modes`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch

from kinema import pipeline as pipeline_module
from kinema.bench.modes import (
    EDIT_STRENGTHS,
    BenchConfig,
    flicker_ratio,
    format_table,
    future_fit,
    run_bench,
    seam_ratios,
)
from kinema.compression.vae import PRESETS as VAE_PRESETS
from kinema.compression.vae import CausalVAE
from kinema.diffusion import draw_noise
from kinema.hub import GenerationDefaults, ModelIndex, ModelLimits, save_model
from kinema.modes import Mode, Span, blend_seams, build_mode_spec, fill_unknown
from kinema.pipeline import (
    Pipeline,
    PipelineOutput,
    StepInfo,
    check_output_path,
    resolve_guidance,
    save_output,
)
from kinema.text import TextEmbedding
from kinema.transformer import DiT, get_preset
from kinema.video import probe_video, read_video, write_video
from kinema.world.render import render_scene
from kinema.world.sampler import sample_scene
from test_cli import run

SIZE = 16  # pixels; the debug VAE (4x space) and a 1x2x2 patch make 2x2 tokens per latent frame
STEPS = 2


class FakeTextEncoder:
    """Deterministic 8-d tokens per prompt (3 to 5 of them), so MiniLM need not load."""

    name = "fake"
    fingerprint = "fake:1"
    dim = 8
    max_length = 16

    def encode(self, prompts: list[str]) -> TextEmbedding:
        sequences = []
        for prompt in prompts:
            seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
            g = torch.Generator().manual_seed(seed)
            sequences.append(torch.randn(3 + seed % 3, self.dim, generator=g))
        return TextEmbedding.from_sequences(sequences)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    vae = CausalVAE(VAE_PRESETS["debug"])
    dit = DiT(get_preset("debug", in_dim=16, text_dim=FakeTextEncoder.dim))
    with torch.no_grad():  # leave adaLN-Zero: a fresh DiT predicts exactly zero
        for p in dit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    defaults = GenerationDefaults(
        width=SIZE, height=SIZE, num_frames=9, fps=8, num_inference_steps=STEPS, guidance_scale=2.0
    )
    index = ModelIndex(
        patch=(1, 2, 2),
        text_encoder="minilm",
        defaults=defaults,
        limits=ModelLimits(min_size=16, max_size=32, max_frames=17),
    )
    return save_model(tmp_path_factory.mktemp("model") / "tiny", vae, dit, index)


@pytest.fixture(scope="module")
def pipe(model_dir) -> Pipeline:
    torch.set_num_threads(1)
    return Pipeline.from_pretrained(model_dir, text_encoder=FakeTextEncoder())


def frames(n: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def encoded_given(pipe: Pipeline, out, mode: Mode, window: int = 0, **inputs) -> torch.Tensor:
    """What window `window`'s given latents must be: the whole window's frames with
    placeholders, encoded at once."""
    from kinema.modes import ModeInputs

    spec = build_mode_spec(mode, ModeInputs(**inputs), out.settings.num_frames, pipe.geometry())
    timeline = np.zeros((spec.timeline_frames, SIZE, SIZE, 3), np.uint8)
    for slot, given in spec.given:
        timeline[slot : slot + len(given)] = given
    w = spec.windows[window]
    return pipe.encode_video(fill_unknown(timeline[w.frame_ids], ~w.generate)).cpu()


# --- every mode -----------------------------------------------------------------------------


def test_t2v_shapes_timings_spans_and_callback(pipe):
    steps: list[StepInfo] = []
    out = pipe("a red ball", seed=3, callback=steps.append)
    assert out.frames.shape == (9, SIZE, SIZE, 3) and out.frames.dtype == np.uint8
    assert out.fps == 8.0 and out.seed == 3 and out.mode is Mode.T2V and not out.loop
    assert [tuple(z.shape) for z in out.latents] == [(4, 3, 4, 4)]
    assert not out.given_latents[0].any() and out.given_psnr is None
    assert [(s.start, s.stop, s.window) for s in out.spans] == [(0, 9, 0)]
    assert set(out.timings) == {"text", "encode", "sampling", "decode", "total"}
    assert [s.step for s in steps] == [1, 2] and all(s.total_steps == STEPS for s in steps)
    assert steps[-1].t == 0.0 and steps[0].num_windows == 1


def test_image_first_t2v_samples_frame_0_then_the_clip_from_it(pipe):
    out = pipe("a red ball", seed=3, image_first=True, refine_steps=0)
    assert out.frames.shape == (9, SIZE, SIZE, 3) and out.settings.image_first
    assert [tuple(z.shape) for z in out.latents] == [(4, 1, 4, 4), (4, 3, 4, 4)]
    assert [(s.start, s.stop, s.window) for s in out.spans] == [(0, 1, 0), (1, 9, 1)]
    assert out.given_latents[1].tolist() == [True, False, False]
    # the clip starts from the image: its first latent is frame 0 as decoded, encoded again
    expected = pipe.encode_video(out.frames[:1]).cpu()
    torch.testing.assert_close(out.latents[1][:, :1], expected, atol=1e-5, rtol=0)
    image = pipe("a red ball", mode="t2i", seed=3)
    plain = pipe("a red ball", seed=3)
    assert not plain.settings.image_first and len(plain.latents) == 1
    assert np.array_equal(out.frames[0], image.frames[0])  # the same noise makes the same image


def test_seeds_reproduce_and_differ(pipe):
    a = pipe("a red ball", seed=5)
    b = pipe("a red ball", generator=torch.Generator().manual_seed(5))
    c = pipe("a red ball", seed=6)
    assert np.array_equal(a.frames, b.frames) and torch.equal(a.latents[0], b.latents[0])
    assert not torch.equal(a.latents[0], c.latents[0])
    other_prompt = pipe("a blue cube", seed=5)
    assert not torch.equal(a.latents[0], other_prompt.latents[0])
    random = pipe("a red ball", seed=-1)
    assert 0 <= random.seed < 2**32 and random.settings.seed == random.seed


def test_modes_given_frames_default_to_their_own_guidance(pipe, monkeypatch):
    given = dataclasses.replace(pipe.index.defaults, given_guidance_scale=1.5)
    monkeypatch.setattr(pipe, "index", dataclasses.replace(pipe.index, defaults=given))
    t2v = pipe("a red ball", seed=1)
    i2v = pipe("a red ball", mode="i2v", image=frames(1)[0], seed=1)
    chosen = pipe("a red ball", mode="i2v", image=frames(1)[0], seed=1, guidance_scale=3.0)
    assert (t2v.settings.guidance_scale, i2v.settings.guidance_scale) == (2.0, 1.5)
    assert chosen.settings.guidance_scale == 3.0
    # the guidance is used, not only recorded: the same seed at 3.0 samples other latents
    assert not torch.equal(i2v.latents[0], chosen.latents[0])
    assert [given.guidance_for(m) for m in ("t2v", "t2i", "long", "edit", Mode.LOOP)] == [
        2.0,
        2.0,
        2.0,
        1.5,
        1.5,
    ]
    assert GenerationDefaults(guidance_scale=7.0).guidance_for("i2v") == 7.0  # None: the same


def record_sampling(pipe, monkeypatch, argument: str, **defaults) -> list:
    """Give `pipe` these generation defaults; the returned list collects the value of
    generate_latents' `argument` at every window the pipeline samples."""
    changed = dataclasses.replace(pipe.index.defaults, **defaults)
    monkeypatch.setattr(pipe, "index", dataclasses.replace(pipe.index, defaults=changed))
    used: list = []
    sample = pipeline_module.generate_latents

    def recording(*args, **kwargs):
        used.append(kwargs[argument])
        return sample(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "generate_latents", recording)
    return used


def test_windows_given_frames_to_continue_take_the_given_guidance(pipe, monkeypatch):
    used = record_sampling(pipe, monkeypatch, "guidance_scale", given_guidance_scale=1.5)
    given = pipe.index.defaults
    out = pipe("a red ball", mode="long", num_frames=25, seed=1)
    assert len(out.latents) >= 3  # a text window, then chained ones given its frames
    assert used == [2.0] + [1.5] * (len(out.latents) - 1)
    assert (out.settings.guidance_scale, out.settings.given_guidance_scale) == (2.0, 1.5)
    used.clear()
    pipe("a red ball", mode="long", num_frames=25, seed=1, guidance_scale=3.0)  # sets every one
    assert set(used) == {3.0}
    used.clear()
    pipe("a red ball", mode="long", num_frames=25, seed=1, given_guidance_scale=0.5)
    assert used[0] == 2.0 and set(used[1:]) == {0.5}
    used.clear()
    pipe("a red ball", seed=1)  # text to video: one window from text alone
    assert used == [2.0]
    # the modes that join given frames take the given guidance everywhere; unset, it is the other
    assert resolve_guidance(given, Mode.I2V, None, None) == {
        "guidance_scale": 1.5,
        "given_guidance_scale": 1.5,
    }
    plain = GenerationDefaults(guidance_scale=7.0)
    assert resolve_guidance(plain, Mode.LONG, None, None)["given_guidance_scale"] == 7.0


def test_windows_given_frames_guide_only_from_their_min_t(pipe, monkeypatch):
    used = record_sampling(pipe, monkeypatch, "guidance_min_t", given_guidance_min_t=0.9)
    out = pipe("a red ball", mode="long", num_frames=25, seed=1)
    assert used == [0.0] + [0.9] * (len(out.latents) - 1)  # the text window guides every step
    assert out.settings.given_guidance_min_t == 0.9
    used.clear()
    i2v = pipe("a red ball", mode="i2v", image=frames(1)[0], seed=1)
    every = pipe("a red ball", mode="i2v", image=frames(1)[0], seed=1, given_guidance_min_t=0.0)
    edit = pipe("a red ball", mode="edit", video=frames(9), seed=1)
    assert used == [0.9, 0.0, 0.0]  # edit starts from its source, not from given frames
    assert edit.settings.given_guidance_min_t == 0.9
    assert not torch.equal(i2v.latents[0], every.latents[0])  # used, not only recorded
    with pytest.raises(ValueError, match=r"given_guidance_min_t must be a number in \[0, 1\]"):
        pipe("a red ball", mode="i2v", image=frames(1)[0], given_guidance_min_t=2.0)
    with pytest.raises(ValueError, match="given_guidance_min_t"):
        GenerationDefaults(given_guidance_min_t=-1.0)
    with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
        GenerationDefaults(guidance_scale=float("nan"))
    with pytest.raises(ValueError, match="given_guidance_scale must be a finite number"):
        GenerationDefaults(given_guidance_scale=-2.0)
    with pytest.raises(ValueError, match="shift must be a finite number"):
        GenerationDefaults(shift=math.inf)


def test_camera_noise_primes_only_windows_from_text_whose_prompt_names_a_move(pipe, monkeypatch):
    used = record_sampling(pipe, monkeypatch, "noise", camera_noise=0.9)
    pan = "a red ball, the camera pans left"
    primed = pipe(pan, seed=2, num_frames=17)
    plain = pipe(pan, seed=2, num_frames=17, camera_noise=0.0)
    assert primed.settings.camera_noise == 0.9 and plain.settings.camera_noise == 0.0
    assert used[0] is not None and used[1] is None
    assert not torch.equal(primed.latents[0], plain.latents[0])
    seeds_own = draw_noise(
        tuple(plain.latents[0].shape), (1, 2, 2), torch.Generator().manual_seed(2)
    )
    assert torch.equal(used[0][:, 0], seeds_own[:, 0])  # frame 0's noise is the seed's own
    assert not torch.equal(used[0][:, 1:], seeds_own[:, 1:])
    # a prompt whose camera does not move starts from the seed's plain noise either way
    still = pipe("a red ball", seed=2, num_frames=17)
    unprimed = pipe("a red ball", seed=2, num_frames=17, camera_noise=0.0)
    assert torch.equal(still.latents[0], unprimed.latents[0])
    # windows given frames keep plain noise: long primes its first window only, i2v none
    used.clear()
    out = pipe(pan, mode="long", num_frames=25, seed=1)
    assert used[0] is not None and all(n is None for n in used[1:]) and len(used) > 1
    assert out.settings.camera_noise == 0.9
    used.clear()
    pipe(pan, mode="i2v", image=frames(1)[0], seed=1)
    pipe(pan, mode="loop", num_frames=17, seed=1)  # a loop's end comes back to its start
    assert set(map(type, used)) == {type(None)} and len(used) == 3
    with pytest.raises(ValueError, match="camera_noise must be a number from 0 to 1"):
        pipe(pan, camera_noise=1.5)
    with pytest.raises(ValueError, match="camera_noise must be a number from 0 to 1"):
        GenerationDefaults(camera_noise=-0.5)


def test_the_stochastic_solver_is_reproducible_from_the_seed(pipe):
    a = pipe("a red ball", seed=5, solver="stochastic")
    b = pipe("a red ball", seed=5, solver="stochastic")
    c = pipe("a red ball", seed=6, solver="stochastic")
    euler = pipe("a red ball", seed=5)
    assert euler.settings.solver.value == "euler"  # the model's default
    assert torch.equal(a.latents[0], b.latents[0]) and a.settings.solver.value == "stochastic"
    assert not torch.equal(a.latents[0], c.latents[0])
    assert not torch.equal(a.latents[0], euler.latents[0])


def test_t2i_and_sizes(pipe):
    out = pipe("a red ball", mode="t2i", seed=0, width=32, height=24)
    assert out.frames.shape == (1, 24, 32, 3) and out.latents[0].shape == (4, 1, 6, 8)


def test_i2v_keeps_the_image_exactly(pipe):
    image = frames(1, seed=1)[0]
    a = pipe("a red ball", mode="i2v", image=image, seed=0, num_frames=13, refine_steps=0)
    b = pipe("a red ball", mode="i2v", image=image, seed=1, num_frames=13, refine_steps=0)
    assert a.frames.shape == (13, SIZE, SIZE, 3)
    assert np.array_equal(a.frames[0], image)  # input frames pass through untouched
    assert a.given_latents[0].tolist() == [True, False, False, False]
    expected = encoded_given(pipe, a, Mode.I2V, image=image)
    assert torch.equal(a.latents[0][:, :1], expected[:, :1])  # kept clean through sampling
    assert torch.equal(a.latents[0][:, 0], b.latents[0][:, 0])
    assert not torch.equal(a.latents[0][:, 1:], b.latents[0][:, 1:])
    assert [(s.start, s.stop, s.window) for s in a.spans] == [(0, 1, None), (1, 13, 0)]
    assert a.given_psnr is not None


def test_i2v_refines_the_image_latent_for_the_decoder_only(pipe):
    image = frames(1, seed=1)[0]
    kwargs = {"mode": "i2v", "image": image, "seed": 0, "num_frames": 13}
    plain = pipe("a red ball", refine_steps=0, **kwargs)
    refined = pipe("a red ball", **kwargs)  # the default: 20 steps for an image at the start
    assert refined.settings.refine_steps is None and plain.settings.refine_steps == 0
    # the transformer saw the encoder's latent either way: the generated latents are the same
    assert torch.equal(refined.latents[0][:, 1:], plain.latents[0][:, 1:])
    # the decoder got a latent fitted to the image: frame 0 decodes closer to it
    assert not torch.equal(refined.latents[0][:, 0], plain.latents[0][:, 0])
    assert refined.given_psnr > plain.given_psnr
    assert np.array_equal(refined.frames[0], image)
    longer = pipe("a red ball", refine_steps=60, **kwargs)
    assert longer.given_psnr > refined.given_psnr


def test_refine_steps_default_to_an_image_at_a_windows_start(pipe):
    def given(*flags: bool) -> np.ndarray:
        return np.array(flags)

    steps = pipeline_module.default_refine_steps
    assert steps(given(True, False, False)) == pipeline_module.DEFAULT_REFINE_STEPS  # i2v
    assert steps(given(True, True, False)) == 0  # extend's context
    assert steps(given(False, True, True)) == 0  # extend-backward
    assert steps(given(True, False, True)) == 0  # first and last
    # asked for: every window's given latents, here extend-forward's two context latents
    video = frames(10, seed=3)
    kwargs = {"mode": "extend-forward", "video": video, "seed": 0, "num_frames": 4}
    plain, asked = pipe("a red ball", **kwargs), pipe("a red ball", refine_steps=5, **kwargs)
    assert torch.equal(plain.latents[0][:, 2:], asked.latents[0][:, 2:])
    assert not torch.equal(plain.latents[0][:, :2], asked.latents[0][:, :2])


def test_i2v_with_a_last_image(pipe):
    first, last = frames(2, seed=2)
    out = pipe("a red ball", mode="i2v", image=first, last_image=last, seed=0)
    assert out.given_latents[0].tolist() == [True, False, True]
    assert np.array_equal(out.frames[0], first) and (out.frames[5:] == last).all()


def test_extend_forward_and_backward(pipe):
    video = frames(10, seed=3)
    fwd = pipe("a red ball", mode="extend-forward", video=video, seed=0, num_frames=6)
    assert fwd.frames.shape[0] == 16 and np.array_equal(fwd.frames[:10], video)
    assert [w.tolist() for w in fwd.given_latents] == [[True, True, False], [True, True, False]]
    expected = encoded_given(pipe, fwd, Mode.EXTEND_FORWARD, video=video)
    # only the 5 frames of the given latents were encoded: equal to the whole window's latents
    torch.testing.assert_close(fwd.latents[0][:, :2], expected[:, :2], atol=1e-5, rtol=0)
    assert not fwd.latents[0][:, 2].eq(expected[:, 2]).all()  # generated, not the placeholder
    assert [(s.start, s.stop, s.window) for s in fwd.spans] == [
        (0, 10, None),
        (10, 14, 0),
        (14, 16, 1),
    ]
    bwd = pipe("a red ball", mode="extend-backward", video=video, seed=0, num_frames=3)
    assert bwd.frames.shape[0] == 13 and np.array_equal(bwd.frames[3:], video)
    # windows of 9 frames with 8 of context make one new frame each, right to left
    assert [w.tolist() for w in bwd.given_latents] == [[False, True, True]] * 3
    assert [s.window for s in bwd.spans] == [2, 1, 0, None]
    expected = encoded_given(pipe, bwd, Mode.EXTEND_BACKWARD, video=video)
    assert torch.equal(bwd.latents[0][:, 1:], expected[:, 1:])


def test_seams_are_blended_into_the_given_frames(pipe):
    video = frames(7, seed=6)
    kwargs = {"mode": "extend-forward", "video": video, "seed": 1, "num_frames": 4}
    raw = pipe("a red ball", blend_seams=False, **kwargs)
    blended = pipe("a red ball", **kwargs)
    assert blended.settings.blend_seams and not raw.settings.blend_seams
    assert torch.equal(raw.latents[0], blended.latents[0])  # sampling is the same
    # unblended: the generated frames are the decoded window's; blended: moved by the residual
    # of the given frames (the window is the video's last 5 frames, then 4 new ones)
    decoded = pipe.decode_latents(raw.latents[0])
    np.testing.assert_array_equal(raw.frames[7:], decoded[5:])
    window = np.concatenate([video[2:], decoded[5:]])
    generate = np.array([False] * 5 + [True] * 4)
    fade = pipe.vae.config.time_compression
    expected = blend_seams(decoded, window, generate, fade)[5:]
    np.testing.assert_array_equal(blended.frames[7:], expected)
    assert np.array_equal(blended.frames[:7], video) and not np.array_equal(
        blended.frames, raw.frames
    )
    assert blended.given_psnr == raw.given_psnr  # measured on the decoded given frames


def test_connect_makes_a_transition(pipe):
    a, b = frames(7, seed=4), frames(9, seed=5)
    out = pipe("a red ball", mode="connect", video=a, video2=b, seed=0, num_frames=4)
    assert out.frames.shape[0] == 7 + 4 + 9
    assert np.array_equal(out.frames[:7], a) and np.array_equal(out.frames[11:], b)
    assert out.given_latents[0].tolist() == [True, True, False, True, True]
    expected = encoded_given(pipe, out, Mode.CONNECT, video=a, video2=b)
    given = out.given_latents[0]
    assert torch.equal(out.latents[0][:, given], expected[:, given])


def test_edit_keeps_more_of_the_source_at_low_strength(pipe):
    video = frames(9, seed=6)
    source = pipe.encode_video(video).cpu()
    steps: list[StepInfo] = []
    errors = []
    for strength in (0.3, 1.0):
        out = pipe(
            "a red ball",
            mode="edit",
            video=video,
            strength=strength,
            seed=0,
            num_inference_steps=4,
            callback=steps.append,
        )
        assert out.frames.shape == video.shape
        errors.append(float((out.latents[0] - source).square().mean()))
    assert errors[0] < errors[1]
    assert steps[0].total_steps < 4 and steps[-1].total_steps == 4  # SDEdit runs part of it


def test_long_chains_windows_and_loop_closes(pipe):
    steps: list[StepInfo] = []
    out = pipe("a red ball", mode="long", num_frames=25, seed=0, callback=steps.append)
    assert out.frames.shape[0] == 25 and len(out.latents) == 5  # 9 frames, then 4 per window
    assert all(g.tolist() == [True, True, False] for g in out.given_latents[1:])
    assert [s.window for s in out.spans] == [0, 1, 2, 3, 4]
    assert len(steps) == 5 * STEPS and steps[-1].window == 4
    loop = pipe("a red ball", mode="loop", num_frames=17, seed=0)
    assert loop.loop and loop.frames.shape[0] == 17 and len(loop.latents) == 2
    assert loop.given_latents[1].tolist() == [True, True, False, True, True]
    assert [(s.start, s.stop, s.window) for s in loop.spans] == [(0, 13, 0), (13, 17, 1)]


def test_latent_output_and_paths(pipe, tmp_path):
    video_path = write_video(tmp_path / "in.mp4", frames(12, seed=7, size=32), fps=8)
    out = pipe("a red ball", mode="extend-forward", video=video_path, output_type="latent", seed=0)
    assert out.frames is None and out.latents[0].shape[1] == 3
    with pytest.raises(ValueError, match="no frames"):
        save_output(out, tmp_path / "x.mp4")


# --- errors ---------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors(pipe, tmp_path):
    with pytest.raises(ValueError, match=r"i2v needs image \(--image\)"):
        pipe("a red ball", mode="i2v")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="cannot read video"):
        pipe("a red ball", mode="extend-forward", video=broken)
    with pytest.raises(ValueError, match=r"cannot read image.*no such file"):
        pipe("a red ball", mode="i2v", image=tmp_path / "missing.png")
    with pytest.raises(ValueError, match="too short for the context"):
        pipe("a red ball", mode="extend-forward", video=frames(3))
    with pytest.raises(
        ValueError, match=r"width 20 .* multiple of 8 .* nearest valid width: 16 or 24"
    ):
        pipe("a red ball", width=20)
    with pytest.raises(ValueError, match=r"height 64 .* from 16 to 32; nearest valid height: 32"):
        pipe("a red ball", height=64)
    with pytest.raises(ValueError, match="unknown mode 'zoom'"):
        pipe("a red ball", mode="zoom")
    with pytest.raises(ValueError, match=r"at most 17 frames .* use mode long"):
        pipe("a red ball", num_frames=20)
    with pytest.raises(ValueError, match="t2v takes no video"):
        pipe("a red ball", video=frames(9))
    with pytest.raises(ValueError, match="either seed or generator"):
        pipe("a red ball", seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        pipe("  ")
    with pytest.raises(ValueError, match="refine_steps must be None or an int >= 0, got -1"):
        pipe("a red ball", mode="i2v", image=frames(1)[0], refine_steps=-1)
    with pytest.raises(ValueError, match=r"guidance_scale must be a finite number >= 0.*got nan"):
        pipe("a red ball", guidance_scale=float("nan"))
    with pytest.raises(ValueError, match=r"guidance_scale must be a finite number >= 0.*got -1"):
        pipe("a red ball", guidance_scale=-1.0)
    with pytest.raises(ValueError, match=r"given_guidance_scale must be a finite .*got inf"):
        pipe("a red ball", mode="i2v", image=frames(1)[0], given_guidance_scale=math.inf)
    with pytest.raises(ValueError, match=r"fps must be a number in \(0, 1000\], got inf"):
        pipe("a red ball", fps=math.inf)
    with pytest.raises(ValueError, match=r"shift must be a finite number > 0 \(1: no shift\)"):
        pipe("a red ball", shift=0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 1.5}, r"num_frames must be None or an int >= 1, got 1\.5"),
        ({"num_frames": True}, r"num_frames must be None or an int >= 1, got True"),
        (
            {"mode": "edit", "video": frames(9), "strength": "0.5"},
            r"strength must be None or a number in \(0, 1\] .*got '0\.5'",
        ),
        ({"negative_prompt": 5}, r"negative_prompt must be a string .*got 5"),
        ({"seed": True}, r"seed must be an int in \[0, 4294967295\] .*got True"),
        ({"image_first": "no"}, r"image_first must be True or False, got 'no'"),
        ({"blend_seams": "no"}, r"blend_seams must be True or False, got 'no'"),
        ({"num_inference_steps": True}, r"num_inference_steps must be an int >= 1, got True"),
        ({"fps": True}, r"fps must be a number in \(0, 1000\], got True"),
        ({"fps": 5000}, r"fps must be a number in \(0, 1000\], got 5000"),  # the writer's limit
        ({"context_latents": 1.5}, r"context_latents must be an int >= 1, got 1\.5"),
        ({"refine_steps": False}, r"refine_steps must be None or an int >= 0, got False"),
    ],
)
def test_bad_settings_are_value_errors_naming_them(pipe, kwargs, message):
    def sampled(info: StepInfo) -> None:
        raise AssertionError("a bad setting must be refused before sampling")

    with pytest.raises(ValueError, match=message):
        pipe("a red ball", callback=sampled, **kwargs)


def test_text_encoder_must_match_the_model(model_dir):
    class WideEncoder(FakeTextEncoder):
        dim = 16

    with pytest.raises(ValueError, match="16-d tokens but the transformer takes 8-d"):
        Pipeline.from_pretrained(model_dir, text_encoder=WideEncoder())


# --- files, the CLI and the benchmark ----------------------------------------------------------


def test_save_output_formats(pipe, tmp_path):
    out = pipe("a red ball", seed=1)
    video, sidecar = save_output(out, tmp_path / "clip.gif", inputs={})
    assert read_video(video).frames.shape[0] == 9
    record = json.loads(sidecar.read_text())
    assert record["seed"] == 1 and record["mode"] == "t2v" and record["frames"] == 9
    pngs, _ = save_output(out, tmp_path / "frames.png")
    assert len(list(tmp_path.glob("frames_*.png"))) == 9 and pngs.name == "frames_%05d.png"
    with pytest.raises(ValueError, match=r"use one of \.mp4"):
        save_output(out, tmp_path / "clip.avi")


def test_a_printf_png_name_is_used_as_is(pipe, tmp_path):
    out = pipe("a red ball", num_frames=5, seed=1)
    pngs, sidecar = save_output(out, tmp_path / "g_%03d.png")
    assert pngs == tmp_path / "g_%03d.png" and sidecar.is_file()
    assert sorted(p.name for p in tmp_path.glob("g_*.png")) == [f"g_{i:03d}.png" for i in range(5)]
    for bad in ("g_%d_%d.png", "100%.png", "g_%%.png"):
        with pytest.raises(ValueError, match=r"pattern with one int field, like 'frame_%05d"):
            check_output_path(tmp_path / bad)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_unwritable_output_folder_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(
        ValueError, match=r"cannot write /proc/x\.mp4: cannot create files in /proc"
    ):
        check_output_path("/proc/x.mp4")
    missing_model = str(tmp_path / "no-model")  # loading it would fail with another message
    code, _, err = run(capsys, "generate", "x", "-o", "/proc/x.mp4", "--model", missing_model)
    assert code == 2 and "cannot create files in /proc" in err and "no-model" not in err, err


def test_cli_generate_refuses_a_bad_output_path_before_loading_a_model(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a file where a folder must be")
    missing_model = str(tmp_path / "no-model")  # loading it would fail with another message
    for out, why in (
        (tmp_path / "clip.avi", r"use one of \.mp4"),
        (blocker / "c.mp4", "not a folder"),
    ):
        code, _, err = run(capsys, "generate", "x", "-o", str(out), "--model", missing_model)
        assert code == 2 and re.search(why, err) and "no-model" not in err, err
    assert check_output_path(tmp_path / "new" / "clip.MP4") == tmp_path / "new" / "clip.MP4"


def test_cli_generate_writes_mp4_and_sidecar(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline_module, "load_text_encoder", lambda *a, **k: FakeTextEncoder())
    image = tmp_path / "first.png"
    write_video(image, frames(1, seed=9, size=24))
    out = tmp_path / "out" / "clip.mp4"
    argv = ["generate", "a red ball", "-o", str(out), "--model", str(model_dir), "--mode", "i2v"]
    code, stdout, err = run(capsys, *argv, "--image", str(image), "--frames", "13", "--seed", "42")
    assert code == 0, err
    assert "seed: 42" in stdout and "sidecar:" in stdout
    assert "i2v" in err and "2/2" in err  # the progress bar
    info = probe_video(out)
    assert (info.width, info.height, info.num_frames) == (SIZE, SIZE, 13)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["prompt"] == "a red ball" and record["seed"] == 42 and record["mode"] == "i2v"
    assert record["num_inference_steps"] == STEPS and (record["width"], record["height"]) == (
        16,
        16,
    )
    assert record["model"] == str(model_dir) and record["inputs"] == {"image": str(image)}
    assert record["blend_seams"] is True
    code, _, err = run(capsys, *argv, "--image", str(image), "--frames", "5", "--no-blend-seams")
    assert code == 0, err
    assert json.loads(out.with_suffix(".json").read_text())["blend_seams"] is False
    code, _, err = run(
        capsys,
        *argv,
        *("--image", str(image), "--refine-steps", "0", "--given-guidance-min-t", "0.9"),
        *("--held-start", "0.8"),
    )
    assert code == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["refine_steps"] == 0 and record["given_guidance_min_t"] == 0.9
    assert record["held_start"] == 0.8
    code, _, err = run(
        capsys, "generate", "x", "-o", str(out), "--model", str(model_dir), "--width", "20"
    )
    assert code == 2 and "nearest valid width: 16 or 24" in err
    argv = [
        "generate",
        "a red ball",
        "-o",
        str(out),
        "--model",
        str(model_dir),
        "--expand",
        "world",
    ]
    code, stdout, err = run(capsys, *argv, "--seed", "3")
    assert code == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["original_prompt"] == "a red ball" and record["prompt"] != "a red ball"
    assert f"expanded prompt: {record['prompt']}" in stdout
    assert record["image_first"] is False  # the model's default
    code, _, err = run(capsys, *argv[:6], "--image-first", "--seed", "3")
    assert code == 0, err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["image_first"] is True and len(record["spans"]) == 2
    code, _, err = run(capsys, *argv[:6], "--solver", "stochastic", "--seed", "3")
    assert code == 0, err
    assert json.loads(out.with_suffix(".json").read_text())["solver"] == "stochastic"


def test_expand_prompt_option(pipe):
    plain = pipe("a red ball", seed=5)
    assert plain.settings.original_prompt is None and plain.settings.prompt == "a red ball"
    expanded = pipe("a red ball", seed=5, expand_prompt=True)
    assert expanded.settings.original_prompt == "a red ball"
    assert "red" in expanded.settings.prompt and len(expanded.settings.prompt) > 20
    assert not np.array_equal(plain.frames, expanded.frames)  # generated from the expansion


def test_held_start_starts_only_windows_given_frames_from_them(pipe, monkeypatch):
    used = record_sampling(pipe, monkeypatch, "sde_edit_strength", held_start=0.6)
    video = frames(9)
    steps: list[int] = []
    kwargs = {"mode": "extend-forward", "video": video, "seed": 3, "num_inference_steps": 6}
    held = pipe("a red ball", callback=steps.append, **kwargs)
    plain = pipe("a red ball", held_start=1.0, **kwargs)
    assert used == [0.6, None] and held.settings.held_start == 0.6
    assert 0 < len(steps) < 6  # only the steps below t = 0.6
    assert steps[-1].total_steps == len(steps)
    assert not torch.equal(held.latents[0], plain.latents[0])
    given = held.given_latents[0]
    assert torch.equal(held.latents[0][:, given], plain.latents[0][:, given])  # kept clean
    assert np.array_equal(held.frames[: len(video)], video)  # the input passes through
    # windows from text and from one image start from noise; an edit from its source at its
    # own strength; long's chained windows continue frames
    used.clear()
    pipe("a red ball", seed=3, num_frames=9)
    pipe("a red ball", mode="i2v", image=video[0], seed=3)
    pipe("a red ball", mode="edit", video=video, strength=0.8, seed=3)
    pipe("a red ball", mode="long", num_frames=25, seed=3)
    assert used[:4] == [None, None, 0.8, None] and set(used[4:]) == {0.6} and len(used) > 5
    with pytest.raises(ValueError, match="held_start must be a number greater than 0"):
        pipe("a red ball", mode="i2v", image=video[0], held_start=0.0)


def test_held_start_moves_on_as_the_given_video_does(pipe, monkeypatch):
    velocities = []
    hold = pipeline_module.held_latents

    def recording(given, flags, velocity=(0.0, 0.0)):
        velocities.append(velocity)
        return hold(given, flags, velocity)

    monkeypatch.setattr(pipeline_module, "held_latents", recording)
    still = np.repeat(frames(1, seed=4), 9, axis=0)
    panning = np.stack([np.roll(still[0], i // 4, axis=1) for i in range(9)])  # 1 px / 4 frames
    for video in (still, panning):
        pipe("a red ball", mode="extend-forward", video=video, seed=3, held_start=0.7)
        pipe("a red ball", mode="extend-backward", video=video, seed=3, held_start=0.7)
    pipe("a red ball", mode="connect", video=panning, video2=still, seed=3, held_start=0.7)
    tc, sc = pipe.vae.config.time_compression, pipe.vae.config.space_compression
    moved = tc / 4 / sc  # latent pixels per latent frame
    expected = [(0, 0), (0, 0), (moved, 0), (moved, 0), (0, 0)]  # connect interpolates
    assert np.allclose(velocities, expected, atol=0.05)
    with pytest.raises(ValueError, match="held_start must be a number greater than 0"):
        GenerationDefaults(held_start=2.0)


def test_seam_ratio():
    ramp = np.repeat(np.arange(0, 200, 10, dtype=np.uint8), 4 * 4 * 3).reshape(20, 4, 4, 3)
    assert seam_ratios(ramp, [5]) == pytest.approx([1.0])
    cut = ramp.copy()
    cut[10:] = 255 - cut[10:]
    assert seam_ratios(cut, [10])[0] > 5
    assert seam_ratios(ramp, [0], wrap=True)[0] == pytest.approx(19.0)  # 190 back to 0


def test_flicker_ratio():
    values = [0, 10, 20, 30, 40, 100, 130]  # input steps 10, a seam of 60, generated steps 30
    frames = np.repeat(np.array(values, np.uint8), 2 * 2 * 3).reshape(-1, 2, 2, 3)
    spans = [Span(0, 5, None), Span(5, 7, 0)]
    assert flicker_ratio(frames, spans) == pytest.approx(3.0)  # 4.5 if the seam counted
    assert flicker_ratio(frames, [Span(0, 1, None), Span(1, 7, 0)]) is None  # one input frame
    assert flicker_ratio(frames, [Span(0, 7, 0)]) is None


def test_bench_config_names_a_bad_flag():
    with pytest.raises(ValueError, match=r"clips \(--clips\) must be >= 1, got 0"):
        BenchConfig(clips=0)
    with pytest.raises(ValueError, match=r"--long-seconds\) must be finite and > 0, got -1"):
        BenchConfig(long_seconds=-1)
    with pytest.raises(ValueError, match=r"--steps\) must be >= 1, got 0"):
        BenchConfig(steps=0)
    with pytest.raises(ValueError, match=r"given_guidance_min_t must be a number in \[0, 1\]"):
        BenchConfig(given_guidance_min_t=1.5)
    with pytest.raises(ValueError, match=r"held_start \(--held-start\) must be a number greater"):
        BenchConfig(held_start=0.0)
    with pytest.raises(
        ValueError, match=r"modes \(--modes\) must name some of t2v, .*long; got \[\]"
    ):
        BenchConfig(modes=())


def test_future_fit_compares_new_frames_with_the_worlds_own():
    spec = sample_scene(np.random.default_rng(5), 32, 32, num_frames=9, fps=8)
    truth = render_scene(dataclasses.replace(spec, num_frames=17))
    assert np.abs(np.diff(truth[8:].astype(int), axis=0)).mean() > 0  # the scene moves on

    def output(frames: np.ndarray) -> PipelineOutput:
        spans = [Span(0, 9, None), Span(9, 17, 0)]
        mode = Mode.EXTEND_FORWARD
        return PipelineOutput(frames, 8, 0, mode, [], [], spans, None, {}, False, None)  # type: ignore[arg-type]

    db, motion = future_fit(output(truth), spec)
    assert db > 100 and motion == pytest.approx(1.0)  # the same frames
    frozen = truth.copy()
    frozen[9:] = truth[8]
    db_frozen, motion_frozen = future_fit(output(frozen), spec)
    assert motion_frozen == 0.0 and db_frozen < 60


def test_bench_modes(pipe, model_dir, tmp_path, capsys, monkeypatch):
    config = BenchConfig(clips=1, steps=1, long_seconds=3.0, strengths=(0.5, 1.0))
    report = run_bench(pipe, config)
    rows = {row["mode"]: row for row in report["modes"]}
    assert set(rows) == {
        "t2v",
        "t2i",
        "i2v",
        "extend-forward",
        "extend-backward",
        "connect",
        "loop",
    }
    assert rows["connect"]["seam_ratio_mean"] > 0 and rows["i2v"]["given_psnr"] > 0
    for mode in ("i2v", "connect", "loop"):
        assert 0 < rows[mode]["seam_ratio_median"] <= rows[mode]["seam_ratio_max"], mode
        seams = rows[mode]["seam_ratios"]
        assert rows[mode]["seam_ratio_median"] == statistics.median(seams), mode
        assert rows[mode]["seam_ratio_max"] == max(seams), mode
    # i2v: image -> frames; loop: into its regenerated end, and last -> first; connect: into
    # and out of the new frames
    assert [len(rows[m]["seam_ratios"]) for m in ("i2v", "loop", "connect")] == [1, 2, 2]
    assert rows["t2v"]["seam_ratios"] == [] and rows["t2v"]["prompts"] == rows["i2v"]["prompts"]
    assert len(rows["i2v"]["prompts"]) == 1 and rows["i2v"]["prompts"][0]
    assert (
        rows["t2v"]["seam_ratio_mean"] is None and rows["t2v"]["unblended_seam_ratio_mean"] is None
    )
    assert rows["connect"]["unblended_seam_ratio_mean"] > 0
    assert rows["connect"]["flicker_ratio"] > 0 and rows["t2v"]["flicker_ratio"] is None
    assert rows["i2v"]["unrefined_given_psnr"] < rows["i2v"]["given_psnr"]
    assert rows["connect"]["unrefined_given_psnr"] is None  # its default refines nothing
    assert report["long"]["unblended_seam_ratio_max"] > 0
    assert [row["strength"] for row in report["edit"]] == [0.5, 1.0]
    assert report["long"]["frames"] == 24 and report["long"]["windows"] == 5
    assert rows["extend-forward"]["future_psnr"] > 0 and rows["extend-forward"]["motion_ratio"] > 0
    assert "future_psnr" not in rows["extend-backward"]
    monkeypatch.setattr(pipeline_module, "load_text_encoder", lambda *a, **k: FakeTextEncoder())
    out = tmp_path / "bench.json"
    argv = ["bench", "modes", "--model", str(model_dir), "--json", str(out), "--clips", "1"]
    code, stdout, err = run(
        capsys,
        *argv,
        *("--steps", "1", "--long-seconds", "2", "--given-guidance-min-t", "0.5"),
        *("--held-start", "0.7"),
    )
    assert code == 0, err
    assert "extend-forward" in stdout and "edit strength" in stdout and "flicker" in stdout
    assert "i2v given PSNR without latent refinement" in stdout
    written = json.loads(out.read_text())
    assert written["long"]["frames"] == 16 and written["given_guidance_min_t"] == 0.5
    assert written["held_start"] == 0.7 and report["held_start"] == 1.0  # the model's default
    assert "against the world's own next frames" in stdout
    assert report["given_guidance_min_t"] == 0.0  # the model's, when the bench leaves it out


def test_bench_modes_runs_the_modes_asked_for(pipe, model_dir, tmp_path, capsys, monkeypatch):
    config = BenchConfig(clips=1, steps=1, modes=(Mode.CONNECT,))
    report = run_bench(pipe, config)
    assert [row["mode"] for row in report["modes"]] == ["connect"]
    assert report["edit"] == [] and report["long"] is None
    assert "connect" in format_table(report) and "edit strength" not in format_table(report)
    monkeypatch.setattr(pipeline_module, "load_text_encoder", lambda *a, **k: FakeTextEncoder())
    out = tmp_path / "bench.json"
    argv = ["bench", "modes", "--model", str(model_dir), "--json", str(out), "--clips", "1"]
    code, stdout, err = run(capsys, *argv, "--steps", "1", "--modes", "t2i, edit")
    assert code == 0, err
    assert "edit strength" in stdout and "extend-forward" not in stdout
    written = json.loads(out.read_text())
    assert [row["mode"] for row in written["modes"]] == ["t2i"] and written["long"] is None
    assert [row["strength"] for row in written["edit"]] == list(EDIT_STRENGTHS)
    code, _, err = run(capsys, *argv, "--modes", "extend")
    assert code != 0 and "unknown mode 'extend'; valid modes: t2v" in err
    code, _, err = run(capsys, *argv, "--modes", " , ")
    assert code != 0 and "modes (--modes) must name some of t2v" in err
