"""Generating a WorldBench suite with a model: clips, manifest, resume, and scoring."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.world.dataset import read_manifest
from kinema.world.evaluate import evaluate_manifest
from kinema.world.generate import generate_suite
from kinema.world.render import render_scene
from kinema.world.spec import SceneSpec
from kinema.world.suite import load_suite

ENTRIES = load_suite()[:6]


def oracle(entries):
    """A 'model' that renders exactly what each prompt asks for (looked up by prompt)."""
    specs = {e["prompt"]: SceneSpec.from_dict(e["spec"]) for e in entries}
    calls = []

    def generate(text, width, height, frames, fps, seed):
        calls.append(text)
        spec = specs[text]
        assert (spec.width, spec.height, spec.num_frames) == (width, height, frames)
        return render_scene(spec)

    return generate, calls


def test_oracle_scores_high_and_noise_scores_low(tmp_path):
    generate, _ = oracle(ENTRIES)
    manifest = generate_suite(generate, ENTRIES, tmp_path / "oracle", progress=False)
    report = evaluate_manifest(read_manifest(manifest), workers=1, progress=False)
    assert report["n"] == len(ENTRIES) and report["overall"] >= 0.95

    def noise(text, width, height, frames, fps, seed):
        return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), np.uint8)

    manifest = generate_suite(noise, ENTRIES, tmp_path / "noise", progress=False)
    report = evaluate_manifest(read_manifest(manifest), workers=1, progress=False)
    assert report["overall"] <= 0.2


def test_existing_clips_are_kept(tmp_path):
    generate, calls = oracle(ENTRIES)
    generate_suite(generate, ENTRIES[:3], tmp_path, progress=False)
    generate_suite(generate, ENTRIES, tmp_path, progress=False)
    assert len(calls) == len(ENTRIES)  # the first three were not made twice
    records = read_manifest(tmp_path / "manifest.jsonl")
    assert [r["id"] for r in records] == [e["id"] for e in ENTRIES]


def test_caption_text_and_bad_text_field(tmp_path):
    seen = []

    def generate(text, width, height, frames, fps, seed):
        seen.append(text)
        return np.zeros((frames, height, width, 3), np.uint8)

    generate_suite(generate, ENTRIES[:1], tmp_path, text="caption", progress=False)
    assert seen == [ENTRIES[0]["caption"]]
    with pytest.raises(ValueError, match="'prompt' or 'caption'"):
        generate_suite(generate, ENTRIES[:1], tmp_path, text="title", progress=False)


def test_a_folder_refuses_clips_made_under_other_settings(tmp_path):
    generate, calls = oracle(ENTRIES)
    settings = {"model": "/models/a", "steps": 20, "guidance": None}
    generate_suite(generate, ENTRIES[:2], tmp_path, progress=False, settings=settings)
    generate_suite(generate, ENTRIES[:3], tmp_path, progress=False, settings=dict(settings))
    assert len(calls) == 3  # same settings: the folder's clips are reused
    other = {**settings, "model": "/models/b"}
    with pytest.raises(ValueError, match=r"model: '/models/a' there, '/models/b' now.*--out"):
        generate_suite(generate, ENTRIES[:3], tmp_path, progress=False, settings=other)
    with pytest.raises(ValueError, match="text: 'prompt' there, 'caption' now"):
        generate_suite(generate, ENTRIES[:3], tmp_path, text="caption", settings=settings)
    assert len(calls) == 3


def test_clips_of_unknown_origin_are_refused(tmp_path):
    generate, _ = oracle(ENTRIES)
    generate_suite(generate, ENTRIES[:1], tmp_path, progress=False)
    (tmp_path / "settings.json").unlink()  # as a folder written before settings were recorded
    with pytest.raises(ValueError, match=r"no settings\.json"):
        generate_suite(generate, ENTRIES[:1], tmp_path, progress=False)


def test_records_without_specs_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"1 manifest record\(s\) have no 'spec' field.*a\.mp4"):
        evaluate_manifest([{"path": "a.mp4"}], workers=1, progress=False)


def test_first_frame_passes_each_scene_s_first_frame_and_is_recorded(tmp_path):
    specs = {e["prompt"]: SceneSpec.from_dict(e["spec"]) for e in ENTRIES[:3]}
    images = []

    def continue_from(text, width, height, frames, fps, seed, image):
        rendered = render_scene(specs[text])
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
        images.append(np.array_equal(image, rendered[0]))
        return rendered

    manifest = generate_suite(
        continue_from, ENTRIES[:3], tmp_path / "i2v", progress=False, given_frames=1
    )
    assert images == [True, True, True]
    report = evaluate_manifest(read_manifest(manifest), workers=1, progress=False)
    assert report["overall"] >= 0.95
    # an i2v folder is not a t2v folder
    generate, _ = oracle(ENTRIES)
    with pytest.raises(ValueError, match="first_frame: True there, '\\(unset\\)' now"):
        generate_suite(generate, ENTRIES[:3], tmp_path / "i2v", progress=False)


def test_given_frames_pass_each_scene_s_first_frames_as_a_video(tmp_path):
    specs = {e["prompt"]: SceneSpec.from_dict(e["spec"]) for e in ENTRIES[:3]}
    matches = []

    def extend(text, width, height, frames, fps, seed, video):
        rendered = render_scene(specs[text])
        assert video.shape == (5, height, width, 3) and video.dtype == np.uint8
        matches.append(np.array_equal(video, rendered[:5]))  # the scene's own first frames
        return rendered

    manifest = generate_suite(extend, ENTRIES[:3], tmp_path / "x", progress=False, given_frames=5)
    assert matches == [True, True, True]
    assert evaluate_manifest(read_manifest(manifest), workers=1, progress=False)["overall"] >= 0.95
    with pytest.raises(ValueError, match="given_frames: 5 there, '\\(unset\\)' now"):
        generate_suite(oracle(ENTRIES)[0], ENTRIES[:3], tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match=r"given_frames must be from 0 to .*got 33"):
        generate_suite(extend, ENTRIES[:3], tmp_path / "y", progress=False, given_frames=33)


def test_a_run_that_failed_before_its_first_clip_leaves_no_claim(tmp_path):
    def failing(text, width, height, frames, fps, seed):
        raise ValueError("num_inference_steps must be an int >= 1, got 0")

    with pytest.raises(ValueError, match="num_inference_steps"):
        generate_suite(failing, ENTRIES[:1], tmp_path, progress=False, settings={"steps": 0})
    generate, calls = oracle(ENTRIES)
    generate_suite(generate, ENTRIES[:1], tmp_path, progress=False, settings={"steps": 20})
    assert len(calls) == 1  # the corrected rerun: its settings replace the failed run's
    with pytest.raises(ValueError, match="steps: 20 there, 0 now"):  # once a clip is made
        generate_suite(failing, ENTRIES[:2], tmp_path, progress=False, settings={"steps": 0})
