"""WorldBench measures what it claims: true renders pass, wrong specs and noise fail, and a clip
re-rendered with one attribute changed fails exactly that attribute's check."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kinema.video import read_video, write_video
from kinema.world.bench import analyze_video, bench_video, score_video, summarize
from kinema.world.dataset import make_world, read_manifest
from kinema.world.evaluate import derangement, evaluate_manifest
from kinema.world.look import palette_share
from kinema.world.render import render_scene
from kinema.world.sampler import Scenario, is_valid, sample_scene
from kinema.world.spec import Camera, Color, Motion, SceneSpec, Shape, Tone

SIZES = [(64, 64), (96, 64), (64, 96)]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> list[dict]:
    """36 ground-truth clips written as H.264 mp4 and read back from the manifest."""
    out = tmp_path_factory.mktemp("world")
    return read_manifest(make_world(out, n=36, seed=7, sizes=SIZES, workers=2, progress=False))


@pytest.fixture(scope="module")
def truth_report(world) -> dict:
    return evaluate_manifest(world, workers=2, progress=False)


@pytest.fixture(scope="module")
def shuffled_report(world) -> dict:
    return evaluate_manifest(world, shuffle_seed=0, workers=2, progress=False)


def test_ground_truth_scores_at_least_098(truth_report):
    report = truth_report
    assert report["n"] == 36 and report["unreadable"] == 0
    assert report["overall"] >= 0.98, report["categories"]
    assert set(report["categories"]) >= {"color", "shape", "count", "motion", "camera"}


def test_shuffled_specs_score_at_most_040(shuffled_report):
    assert shuffled_report["shuffled"]
    assert shuffled_report["overall"] <= 0.40, shuffled_report["categories"]


def test_palette_share_is_high_for_the_truth_whatever_the_spec(truth_report, shuffled_report):
    """Through H.264 the world's clips keep their flat colours; the share needs no spec, so a
    shuffled spec gives the same figures."""
    shares = [c["palette_share"] for c in truth_report["clips"]]
    assert min(shares) > 0.8, shares
    assert truth_report["palette_share"] == pytest.approx(np.mean(shares))
    assert [c["palette_share"] for c in shuffled_report["clips"]] == shares


def test_palette_share_of_noise_blur_and_flat_frames():
    spec = sample_scene(np.random.default_rng(3), 64, 64)
    render = render_scene(spec)
    assert palette_share(render) > 0.9
    noise = np.random.default_rng(0).integers(0, 256, render.shape, np.uint8)
    assert palette_share(noise) < 0.1
    assert palette_share(np.full_like(render, 128)) == 1.0  # the gray tone itself
    assert palette_share(np.full((2, 8, 8, 3), (128, 64, 0), np.uint8)) == 0.0  # a muddy brown
    mixed = (render.astype(np.uint16) + np.roll(render, 17, axis=2)) // 2  # blended, as blotches
    assert palette_share(mixed.astype(np.uint8)) < palette_share(render)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\) uint8, got float32"):
        palette_share(render.astype(np.float32))


def test_noise_videos_score_at_most_010(world):
    rng = np.random.default_rng(0)
    results = []
    for record in world[:12]:
        spec = SceneSpec.from_dict(record["spec"])
        noise = rng.integers(0, 256, (spec.num_frames, spec.height, spec.width, 3), np.uint8)
        results.append(bench_video(noise, spec))
    assert summarize(results)["overall"] <= 0.10


def test_unreadable_video_is_counted_and_fails(world, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    records = [dict(world[0]), {**world[1], "path": str(bad)}]
    report = evaluate_manifest(records, workers=1, progress=False)
    assert report["unreadable"] == 1
    assert report["clips"][1]["overall"] == 0.0
    assert report["clips"][0]["overall"] == 1.0
    assert report["clips"][1]["palette_share"] is None
    assert report["palette_share"] == report["clips"][0]["palette_share"]


def test_derangement_has_no_fixed_point():
    for seed in range(20):
        perm = derangement(5, seed)
        assert sorted(perm) == list(range(5)) and not (perm == np.arange(5)).any()
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, 0)


# --- one attribute changed → exactly that check fails -----------------------------------------


def _failed(frames: np.ndarray, spec: SceneSpec) -> set[tuple[str, str]]:
    return {(c.category, c.name) for c in bench_video(frames, spec).checks if not c.passed}


def _mp4(tmp_path, frames: np.ndarray, fps: float) -> np.ndarray:
    path = write_video(tmp_path / "clip.mp4", frames, fps=fps)
    return read_video(path).frames


def _find(predicate, scenario=None, camera=None, seeds=range(200)) -> SceneSpec:
    for seed in seeds:
        spec = sample_scene(np.random.default_rng(seed), 96, 64, scenario=scenario, camera=camera)
        if predicate(spec):
            return spec
    raise AssertionError("no matching spec in the seeds tried")


def test_truth_passes_every_check(tmp_path):
    spec = _find(lambda s: len(s.objects) == 2, scenario=Scenario.FREE)
    assert _failed(_mp4(tmp_path, render_scene(spec), spec.fps), spec) == set()


def test_changed_color_fails_only_color(tmp_path):
    spec = _find(lambda s: len(s.objects) >= 2, scenario=Scenario.FREE)
    used = {o.color for o in spec.objects}
    other = next(c for c in Color if c not in used)
    changed = dataclasses.replace(spec, objects=[dataclasses.replace(spec.objects[0], color=other)])
    changed.objects += spec.objects[1:]
    frames = _mp4(tmp_path, render_scene(changed), spec.fps)
    name = f"object 0 ({spec.objects[0].color.value} {spec.objects[0].shape.value})"
    assert _failed(frames, spec) == {("color", name)}


def test_changed_shape_fails_only_shape(tmp_path):
    spec = _find(lambda s: len(s.objects) == 1, scenario=Scenario.FREE)
    obj = spec.objects[0]
    other = next(s for s in Shape if s is not obj.shape)
    changed = dataclasses.replace(spec, objects=[dataclasses.replace(obj, shape=other)])
    frames = _mp4(tmp_path, render_scene(changed), spec.fps)
    assert _failed(frames, spec) == {("shape", f"object 0 ({obj.color.value} {obj.shape.value})")}


def test_reversed_time_fails_only_motion(tmp_path):
    def linear_only(s: SceneSpec) -> bool:
        return len(s.objects) == 1 and s.objects[0].motion is Motion.LINEAR

    spec = _find(linear_only, scenario=Scenario.FREE, camera=Camera.STATIC)
    frames = _mp4(tmp_path, render_scene(spec)[::-1], spec.fps)
    obj = spec.objects[0]
    assert _failed(frames, spec) == {("motion", f"object 0 ({obj.color.value} {obj.shape.value})")}


def test_opposite_pan_fails_only_camera(tmp_path):
    def flips_cleanly(s: SceneSpec) -> bool:
        return is_valid(dataclasses.replace(s, camera=Camera.PAN_RIGHT))

    spec = _find(flips_cleanly, scenario=Scenario.FREE, camera=Camera.PAN_LEFT)
    flipped = dataclasses.replace(spec, camera=Camera.PAN_RIGHT)
    frames = _mp4(tmp_path, render_scene(flipped), spec.fps)
    assert _failed(frames, spec) == {("camera", "pan left")}


def test_camera_trust_is_each_key_pair_s_alignment_and_the_worst_decides():
    """A rendered pan aligns at every pair of key frames (0→4, 4→8, ..., 28→32); the same clip
    with the background of one later frame scrambled is untrusted through that pair alone."""
    spec = _find(lambda s: True, scenario=Scenario.FREE, camera=Camera.PAN_LEFT)
    frames = render_scene(spec)
    camera = analyze_video(frames).camera
    assert camera.pair_ncc.shape == (8,) and camera.pair_ncc.min() > 0.8, camera.pair_ncc
    assert camera.confidence == camera.pair_ncc.min()
    scrambled = frames.copy()
    rng = np.random.default_rng(0)
    scrambled[8] = rng.permutation(scrambled[8].reshape(-1, 3)).reshape(scrambled[8].shape)
    ncc = analyze_video(scrambled).camera.pair_ncc
    assert ncc[[0, 3, 4, 5, 6, 7]].min() > 0.8 and ncc[[1, 2]].max() < 0.5, ncc
    camera_check = next(
        c for c in score_video(analyze_video(scrambled), spec).checks if c.category == "camera"
    )
    assert not camera_check.passed and "not trackable" in camera_check.detail


def test_zoom_direction_is_measured(tmp_path):
    spec = _find(lambda s: True, scenario=Scenario.FREE, camera=Camera.ZOOM_IN)
    out = dataclasses.replace(spec, camera=Camera.ZOOM_OUT)
    assert _failed(_mp4(tmp_path, render_scene(spec), spec.fps), spec) == set()
    assert ("camera", "zoom out") in _failed(render_scene(spec), out)


def test_removed_occluder_fails_only_permanence(tmp_path):
    spec = _find(lambda s: True, scenario=Scenario.OCCLUDE, camera=Camera.STATIC)
    frames = _mp4(tmp_path, render_scene(dataclasses.replace(spec, occluder=None)), spec.fps)
    assert _failed(frames, spec) == {("permanence", "occluded object")}


def test_removed_trail_fails_only_trail(tmp_path):
    spec = _find(lambda s: True, scenario=Scenario.PAINT, camera=Camera.STATIC)
    painter = spec.objects[0]
    dry = dataclasses.replace(spec, objects=[dataclasses.replace(painter, trail=False)])
    dry.objects += spec.objects[1:]
    frames = _mp4(tmp_path, render_scene(dry), spec.fps)
    name = f"object 0 ({painter.color.value} {painter.shape.value})"
    assert _failed(frames, spec) == {("trail", name)}


def test_missing_object_fails_count(tmp_path):
    spec = _find(lambda s: len(s.objects) == 2, scenario=Scenario.FREE, camera=Camera.STATIC)
    fewer = dataclasses.replace(spec, objects=spec.objects[:1])
    failed = _failed(_mp4(tmp_path, render_scene(fewer), spec.fps), spec)
    assert ("count", "objects") in failed
    assert all(name.startswith("object 1") for cat, name in failed if cat != "count")


def test_analysis_does_not_depend_on_spec():
    spec = _find(lambda s: len(s.objects) == 2, scenario=Scenario.COLLIDE)
    analysis = analyze_video(render_scene(spec))
    assert {t.color for t in analysis.tracks} == {o.color for o in spec.objects}
    assert score_video(analysis, spec).overall == 1.0


def test_bad_frames_raise_value_error():
    with pytest.raises(ValueError, match="uint8"):
        analyze_video(np.zeros((4, 8, 8, 3), np.float32))


# --- colored floors ----------------------------------------------------------------------------


def _colored_floor(camera: Camera) -> SceneSpec:
    return _find(lambda s: isinstance(s.floor, Color), scenario=Scenario.FREE, camera=camera)


@pytest.mark.parametrize("camera", [Camera.STATIC, Camera.PAN_LEFT, Camera.ZOOM_OUT])
def test_colored_floor_is_found_and_is_not_an_object(tmp_path, camera):
    spec = _colored_floor(camera)
    analysis = analyze_video(_mp4(tmp_path, render_scene(spec), spec.fps))
    assert analysis.floor is spec.floor
    assert {t.color for t in analysis.tracks} == {o.color for o in spec.objects}
    result = score_video(analysis, spec)
    assert ("color", "floor") in {(c.category, c.name) for c in result.checks}
    assert result.overall == 1.0, [c for c in result.checks if not c.passed]


def test_changed_floor_color_fails_only_the_floor_check(tmp_path):
    spec = _colored_floor(Camera.STATIC)
    taken = {o.color for o in spec.objects} | {spec.floor}
    other = next(c for c in Color if c not in taken)
    frames = _mp4(tmp_path, render_scene(dataclasses.replace(spec, floor=other)), spec.fps)
    assert _failed(frames, spec) == {("color", "floor")}
    gray = _mp4(tmp_path, render_scene(dataclasses.replace(spec, floor=Tone.GRAY)), spec.fps)
    assert analyze_video(gray).floor is None
    assert _failed(gray, spec) == {("color", "floor")}


def test_tone_floor_asks_for_no_floor_check():
    spec = _find(lambda s: isinstance(s.floor, Tone), scenario=Scenario.FREE)
    result = bench_video(render_scene(spec), spec)
    assert all(c.name != "floor" for c in result.checks) and result.overall == 1.0
