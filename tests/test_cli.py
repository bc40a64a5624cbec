"""Tests for the `kinema` command, run in-process through `kinema.cli.main` and once as a script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kinema import __version__
from kinema.cli import main
from kinema.video import probe_video, read_video
from kinema.world.dataset import MANIFEST, make_world, read_manifest


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `kinema argv…`, argparse exits included."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory) -> Path:
    """A manifest of 4 rendered clips, one per size and one more."""
    out = tmp_path_factory.mktemp("gt")
    sizes = [(64, 64), (96, 64), (64, 96)]
    return make_world(out, n=4, seed=11, sizes=sizes, workers=1, progress=False)


# --- kinema ------------------------------------------------------------------------------------


def test_the_parser_is_built_without_torch_and_names_every_solver():
    from kinema.cli import SOLVERS_HELP
    from kinema.sampling import Solver

    assert all(solver.value in SOLVERS_HELP for solver in Solver)
    code = (
        "import sys; from kinema.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # `kinema --help` does not wait for torch


def test_every_command_prints_its_help():
    import argparse

    from kinema.cli import build_parser

    parsers, seen = [build_parser()], 0
    while parsers:
        parser = parsers.pop()
        assert parser.format_help()  # argparse %-formats each help string here
        seen += 1
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    assert seen > 20


def test_a_bad_solver_is_refused_with_the_valid_ones(capsys):
    code, _, err = run(capsys, "generate", "a red ball", "-o", "x.mp4", "--solver", "rk4")
    assert code == 2 and "unknown solver 'rk4'; valid solvers are ['euler', 'heun'" in err


def tiny_model(path: Path, monkeypatch) -> Path:
    """A random debug VAE + DiT model folder, with a fake text encoder patched into the pipeline
    (so MiniLM need not load)."""
    import hashlib

    import torch

    import kinema.pipeline as pipeline_module
    from kinema.compression.vae import PRESETS, CausalVAE
    from kinema.hub import GenerationDefaults, ModelIndex, save_model
    from kinema.text import TextEmbedding
    from kinema.transformer import DiT, get_preset

    class FakeTextEncoder:
        name, fingerprint, dim, max_length = "fake", "fake:1", 8, 16

        def encode(self, prompts: list[str]) -> TextEmbedding:
            seeds = [int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) for p in prompts]
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            return TextEmbedding.from_sequences([torch.randn(3, 8, generator=g) for g in gens])

    monkeypatch.setattr(pipeline_module, "load_text_encoder", lambda *a, **k: FakeTextEncoder())
    torch.manual_seed(0)
    vae, dit = CausalVAE(PRESETS["debug"]), DiT(get_preset("debug", in_dim=16, text_dim=8))
    index = ModelIndex(
        defaults=GenerationDefaults(num_frames=9, num_inference_steps=2, guidance_scale=1.0)
    )
    return save_model(path, vae, dit, index)


def test_version_script():
    script = Path(sys.executable).with_name("kinema")
    if not script.exists():
        pytest.skip(f"console script not installed at {script}")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"kinema {__version__}"


def test_version_and_help_in_process(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"kinema {__version__}"
    code, out, _ = run(capsys)
    assert code == 2 and "world" in out and "bench" in out


def test_unknown_command_is_a_usage_error(capsys):
    code, _, err = run(capsys, "world", "explode")
    assert code == 2 and "invalid choice" in err


# --- world make --------------------------------------------------------------------------------


def test_world_make_one_size(capsys, tmp_path):
    out = tmp_path / "w"
    args = ["world", "make", "--n", "3", "--out", str(out), "--seed", "1"]
    code, stdout, err = run(capsys, *args, "--width", "96", "--height", "64", "--workers", "1")
    assert code == 0, err
    assert stdout.strip() == str(out / MANIFEST)
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"clip_{i:06d}.mp4" for i in range(3)]
    records = read_manifest(out / MANIFEST)
    assert len(records) == 3
    for record in records:
        assert (record["width"], record["height"]) == (96, 64)
        assert (record["spec"]["width"], record["spec"]["height"]) == (96, 64)
        info = probe_video(record["path"])
        assert (info.width, info.height, info.num_frames) == (96, 64, 33)


def test_world_make_cycles_the_cameras_it_is_given(capsys, tmp_path):
    out = tmp_path / "w"
    args = ["world", "make", "--n", "4", "--out", str(out), "--frames", "9", "--workers", "1"]
    code, _, err = run(capsys, *args, "--cameras", "pan left, Pan Up")
    assert code == 0, err
    records = read_manifest(out / MANIFEST)
    assert [r["spec"]["camera"] for r in records] == ["pan left", "pan up"] * 2
    code, _, err = run(capsys, *args, "--cameras", "pan sideways")
    assert code != 0 and "'pan sideways' is not a camera move" in err and "'zoom in'" in err


def test_world_make_cycles_sizes(capsys, tmp_path):
    out = tmp_path / "w"
    args = ["world", "make", "--n", "3", "--out", str(out), "--frames", "5", "--workers", "1"]
    code, _, err = run(capsys, *args, "--sizes", "64x64,64x96")
    assert code == 0, err
    records = read_manifest(out / MANIFEST)
    assert [(r["width"], r["height"]) for r in records] == [(64, 64), (64, 96), (64, 64)]
    assert all(r["frames"] == 5 for r in records)
    for record in records:
        frames = read_video(record["path"]).frames
        assert frames.shape == (5, record["height"], record["width"], 3)


def test_world_make_rejects_sizes_with_width(capsys, tmp_path):
    out = tmp_path / "w"
    code, _, err = run(
        capsys,
        "world",
        "make",
        "--n",
        "2",
        "--out",
        str(out),
        "--sizes",
        "64x64",
        "--width",
        "96",
    )
    assert code == 2
    assert "kinema: error:" in err and "--sizes" in err and "--width" in err
    assert not (out / MANIFEST).exists()


def test_world_make_rejects_bad_size(capsys, tmp_path):
    code, _, err = run(
        capsys, "world", "make", "--n", "2", "--out", str(tmp_path), "--sizes", "64x64,64"
    )
    assert code == 2 and "'64'" in err and "WIDTHxHEIGHT" in err


def test_world_make_needs_n_and_out(capsys, tmp_path):
    code, _, err = run(capsys, "world", "make", "--out", str(tmp_path))
    assert code == 2 and "--n" in err


# --- bench world -------------------------------------------------------------------------------


def test_bench_world_scores_ground_truth(capsys, tmp_path, ground_truth):
    report_path = tmp_path / "reports" / "gt.json"
    code, out, err = run(
        capsys,
        "bench",
        "world",
        "--manifest",
        str(ground_truth),
        "--json",
        str(report_path),
        "--workers",
        "1",
    )
    assert code == 0, err
    report = json.loads(report_path.read_text())
    for key in ("overall", "categories", "n"):
        assert key in report
    assert report["n"] == 4
    assert report["overall"] >= 0.95
    assert report["unreadable"] == 0
    assert "overall" in out and str(report_path) in out
    # The printed table matches the report.
    assert f"{report['overall']:.3f}" in out

    shuffled_path = tmp_path / "shuffled.json"
    code, _, err = run(
        capsys,
        "bench",
        "world",
        "--manifest",
        str(ground_truth),
        "--json",
        str(shuffled_path),
        "--shuffle-specs",
        "--workers",
        "1",
    )
    assert code == 0, err
    shuffled = json.loads(shuffled_path.read_text())
    assert shuffled["shuffled"] is True and shuffled["n"] == 4
    assert shuffled["overall"] < report["overall"] - 0.2


def test_bench_world_without_manifest_needs_a_model(capsys, tmp_path):
    missing = tmp_path / "no-model"
    code, _, err = run(
        capsys, "bench", "world", "--model", str(missing), "--json", str(tmp_path / "r.json")
    )
    assert code == 2 and "no-model" in err
    assert not (tmp_path / "r.json").exists()


def test_bench_world_generates_the_suite_with_a_model(capsys, tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "model", monkeypatch)
    report_path, out = tmp_path / "r.json", tmp_path / "clips"
    argv = ["--model", str(model), "--limit", "2", "--out", str(out), "--workers", "1"]
    code, stdout, _ = run(capsys, "bench", "world", *argv, "--json", str(report_path))
    assert code == 0, stdout
    report = json.loads(report_path.read_text())
    assert report["n"] == 2 and 0.0 <= report["overall"] <= 1.0
    assert len(list(out.glob("wb-*.mp4"))) == 2
    i2v_path, i2v_out = tmp_path / "i2v.json", tmp_path / "clips-i2v"
    argv[argv.index(str(out))] = str(i2v_out)
    code, stdout, _ = run(capsys, "bench", "world", *argv, "--mode", "i2v", "--json", str(i2v_path))
    assert code == 0, stdout
    assert json.loads(i2v_path.read_text())["n"] == 2
    assert json.loads((i2v_out / "settings.json").read_text())["first_frame"] is True
    extend_path, extend_out = tmp_path / "extend.json", tmp_path / "clips-extend"
    argv[argv.index(str(i2v_out))] = str(extend_out)
    code, stdout, _ = run(
        capsys, "bench", "world", *argv, "--mode", "extend", "--json", str(extend_path)
    )
    assert code == 0, stdout
    assert json.loads(extend_path.read_text())["n"] == 2
    given = json.loads((extend_out / "settings.json").read_text())["given_frames"]
    assert given == 5  # the model's extend context: 1 + 4 x (2 - 1) frames
    for record in read_manifest(extend_out / MANIFEST):  # the given frames and the added ones
        assert probe_video(extend_out / record["path"]).num_frames == record["frames"]


def test_bench_world_missing_manifest_file(capsys, tmp_path):
    missing = tmp_path / "nope.jsonl"
    code, _, err = run(
        capsys, "bench", "world", "--manifest", str(missing), "--json", str(tmp_path / "r.json")
    )
    assert code == 2 and "nope.jsonl" in err


def test_bench_world_counts_unreadable_videos(capsys, tmp_path, ground_truth):
    records = [json.loads(line) for line in ground_truth.read_text().splitlines()]
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    records[1]["path"] = "broken.mp4"
    for r in records:
        if r["path"] != "broken.mp4":
            r["path"] = str(ground_truth.parent / r["path"])
    manifest = tmp_path / MANIFEST
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    report_path = tmp_path / "r.json"
    code, out, err = run(
        capsys,
        "bench",
        "world",
        "--manifest",
        str(manifest),
        "--json",
        str(report_path),
        "--workers",
        "1",
    )
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["unreadable"] == 1
    assert "broken.mp4" in report["unreadable_files"][0]["path"]
    assert report["clips"][1]["overall"] == 0.0
    assert "unreadable videos: 1" in out


# --- video info --------------------------------------------------------------------------------


def test_video_info(capsys, ground_truth):
    record = read_manifest(ground_truth)[1]  # 96x64
    code, out, err = run(capsys, "video", "info", record["path"])
    assert code == 0, err
    info = json.loads(out)
    assert (info["width"], info["height"]) == (96, 64)
    assert info["num_frames"] == 33 and info["fps"] == pytest.approx(8.0)
    assert info["codec"] == "h264"


@pytest.mark.parametrize("content", [b"this is not a video at all" * 10, b""])
def test_video_info_corrupt_file(capsys, tmp_path, content):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(content)
    code, out, err = run(capsys, "video", "info", str(path))
    assert code != 0
    assert out == ""
    assert "kinema: error:" in err and str(path) in err


def test_video_info_missing_file(capsys, tmp_path):
    path = tmp_path / "missing.mp4"
    code, _, err = run(capsys, "video", "info", str(path))
    assert code != 0 and str(path) in err


# --- demo --------------------------------------------------------------------------------------


def test_demo(capsys, tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "model", monkeypatch)
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--model", str(model), "--out", str(out_dir))
    assert code == 0, err
    paths = [Path(tok) for tok in out.split() if tok.endswith(".mp4")]
    assert len(paths) == 3
    seen = set()
    for path in paths:
        assert path.exists() and path.with_suffix(".json").exists()
        frames = read_video(path).frames
        assert frames.dtype == np.uint8
        seen.add((frames.shape[2], frames.shape[1]))
    assert seen == {(64, 64), (96, 64), (64, 96)}
    assert "seed 0" in out


def test_demo_without_a_shipped_model_renders_the_prompt_with_the_world(
    capsys, tmp_path, monkeypatch
):
    import kinema.hub

    monkeypatch.setattr(kinema.hub, "DEFAULT_MODEL_DIR", tmp_path / "no-model")
    code, out, err = run(capsys, "demo", "--out", str(tmp_path / "demo"))
    assert code == 0, err
    assert "no model_index.json in" in out and out.count("WorldBench 1.00") == 3
    for width, height in ((64, 64), (96, 64), (64, 96)):
        path = tmp_path / "demo" / f"demo_{width}x{height}.mp4"
        assert read_video(path).frames.shape[1:3] == (height, width)
        record = json.loads(path.with_suffix(".json").read_text())
        assert (
            record["source"] == "world" and record["prompt"] == "a red ball bounces on a blue floor"
        )
        spec = record["spec"]
        assert spec["floor"] == "blue"
        assert [(o["color"], o["shape"], o["motion"]) for o in spec["objects"]] == [
            ("red", "circle", "fall")
        ]


def test_world_render_writes_the_prompt_and_names_what_it_cannot_show(capsys, tmp_path):
    out = tmp_path / "ball.mp4"
    code, text, err = run(
        capsys, "world", "render", "a green box slides to the right behind a pillar", "-o", str(out)
    )
    assert code == 0, err
    assert "WorldBench 1.00" in text
    record = json.loads(out.with_suffix(".json").read_text())
    (box,) = record["spec"]["objects"]
    assert (box["color"], box["shape"], box["direction"]) == ("green", "square", "right")
    assert record["spec"]["occluder"] is not None and record["worldbench"] == 1.0
    code, _, err = run(capsys, "world", "render", "a cat plays the piano", "-o", str(out))
    assert code != 0 and "no object of the world" in err
