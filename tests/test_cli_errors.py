"""Bad input to `kinema`: one line naming the value and what would do, exit code 2, and no work
done first (a bad output path is refused before a model loads or a benchmark runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_cli import run


def error_line(capsys, *argv: str) -> str:
    """The one stderr line of a command that must fail with exit code 2."""
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines and "Traceback" not in err, err
    return lines[-1]


@pytest.fixture
def paths(tmp_path, monkeypatch) -> None:
    """Run in tmp_path, which holds a folder `adir` and a file `taken.mp4` (`nomodel`, `v.mp4`,
    `a.json` ... do not exist)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    (tmp_path / "taken.mp4").write_bytes(b"a file")


def nothing_written() -> bool:
    return sorted(p.name for p in Path().iterdir()) == ["adir", "taken.mp4"]


# --- output paths are checked before any work ---------------------------------------------------


REPORT_COMMANDS = {
    "vae eval": ["vae", "eval", "v.mp4", "--model", "nomodel"],
    "bench modes": ["bench", "modes", "--random-model", "--modes", "t2i", "--clips", "1"],
    "bench compare": ["bench", "compare", "a.json", "b.json"],
    "bench world": ["bench", "world", "--model", "nomodel"],
}


BAD_REPORTS = {"adir": "is a folder", "taken.mp4/r.json": "taken.mp4 is a file", "": "is empty"}


@pytest.mark.parametrize("command", REPORT_COMMANDS)
@pytest.mark.parametrize("json_out", BAD_REPORTS)
def test_a_bad_report_path_is_refused_before_the_work(capsys, paths, command, json_out):
    line = error_line(capsys, *REPORT_COMMANDS[command], "--json", json_out)
    assert line.startswith(f"kinema: error: --json {json_out}") and BAD_REPORTS[json_out] in line
    assert "nomodel" not in line and "a.json" not in line, line  # refused before reading those
    assert nothing_written()


@pytest.mark.parametrize(
    ("argv", "folder"),
    [
        (["world", "suite", "--out", "adir"], "adir"),
        (["data", "scan", "adir", "--out", "adir"], "adir"),
        (["generate", "a red ball", "-o", "adir/clip.mp4", "--model", "nomodel"], "adir/clip.mp4"),
    ],
)
def test_a_folder_is_refused_where_a_file_is_written(capsys, paths, argv, folder):
    Path(folder).mkdir(exist_ok=True)
    line = error_line(capsys, *argv)
    assert f"{folder}: is a folder; give the path of a file to write" in line, line


@pytest.mark.parametrize(
    "argv",
    [
        ["world", "make", "--n", "1", "--out", "taken.mp4"],
        ["bench", "world", "--model", "nomodel", "--json", "r.json", "--out", "taken.mp4"],
        ["serve", "--model", "nomodel", "--outputs", "taken.mp4"],
        ["cache", "m.jsonl", "--vae", "nomodel", "--out", "taken.mp4"],
        ["demo", "--model", "nomodel", "--out", "taken.mp4"],
    ],
)
def test_a_file_is_refused_where_a_folder_is_written(capsys, paths, argv):
    line = error_line(capsys, *argv)
    assert "taken.mp4: is a file; give a folder" in line and "nomodel" not in line, line


def test_an_os_error_is_one_line_naming_the_path(capsys, paths):
    line = error_line(capsys, "bench", "compare", "adir", "b.json")  # reads a folder
    assert line == "kinema: error: adir: is a directory"


def test_an_empty_comparison_path_is_refused_not_skipped(capsys, paths):
    line = error_line(capsys, "bench", "compare", "a.json", "b.json", "--json", "")
    assert line == "kinema: error: --json is empty: give the path of a file to write"


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", ["0", "-8", "nan", "inf", "1e9"])
@pytest.mark.parametrize("command", ["make", "render"])
def test_a_bad_fps_is_refused_as_the_command_line_is_read(capsys, paths, command, fps):
    args = ["--n", "1", "--out", "w1"] if command == "make" else ["a red ball", "-o", "r.mp4"]
    line = error_line(capsys, "world", command, *args, "--fps", fps)
    assert "argument --fps: fps must be a number in (0, 1000]" in line, line
    assert nothing_written()


@pytest.mark.parametrize("port", ["-1", "70000", "http"])
def test_a_bad_port_is_refused(capsys, port):
    line = error_line(capsys, "serve", "--port", port)
    assert f"argument --port: a port is a whole number in 0..65535, got '{port}'" in line


def test_a_port_in_use_says_to_pass_another_port(monkeypatch, tmp_path):
    import kinema.serve.app as app_module
    from kinema.serve.app import ServeOptions, launch
    from kinema.serve.limits import StudioLimits

    class GradioApp:
        def queue(self, **_):
            pass

        def launch(self, **_):  # what Gradio raises when the port is taken
            raise OSError(
                "Cannot find empty port in range: 7861-7861. You can specify a different port by "
                "setting the GRADIO_SERVER_PORT environment variable or passing the `server_port` "
                "parameter to `launch()`."
            )

    class FakeStudio:
        limits = StudioLimits()
        outputs = type("Outputs", (), {"directory": tmp_path})()

    monkeypatch.setattr(app_module, "build_app", lambda studio: GradioApp())
    with pytest.raises(OSError, match=r"cannot serve on 127\.0\.0\.1:7861") as info:
        launch(FakeStudio(), ServeOptions(port=7861))
    assert "pass another --port" in str(info.value) and "GRADIO" not in str(info.value)


def test_an_endless_long_video_is_refused(capsys, paths):
    argv = ["bench", "modes", "--random-model", "--json", "r.json", "--long-seconds", "inf"]
    line = error_line(capsys, *argv)
    assert "long_seconds (--long-seconds) must be finite and > 0, got inf" in line


@pytest.mark.parametrize("flag", ["--pixel-budget", "--frames", "--shard-size"])
def test_cache_sizes_are_named_by_their_flags(capsys, paths, flag):
    line = error_line(capsys, "cache", "m.jsonl", "--vae", "v", "--out", "c", flag, "0")
    assert f"argument {flag}: must be a whole number >= 1, got '0'" in line


@pytest.mark.parametrize("short_side", ["-32", "0", "3"])
def test_vae_eval_refuses_a_short_side_below_one_latent_pixel(capsys, paths, short_side):
    from kinema.compression.vae import PRESETS, CausalVAE

    vae = CausalVAE(PRESETS["debug"])
    assert vae.space_compression == 4
    vae.save_pretrained("vae")
    argv = ["vae", "eval", "v.mp4", "--model", "vae", "--json", "r.json"]
    line = error_line(capsys, *argv, "--short-side", short_side)
    assert f"--short-side must be >= 4 (a latent pixel of this VAE), got {short_side}" in line
    assert not Path("r.json").exists()


def test_vae_eval_refuses_no_frames_before_loading_the_vae(capsys, paths):
    argv = ["vae", "eval", "v.mp4", "--model", "nomodel", "--json", "r.json"]
    line = error_line(capsys, *argv, "--max-frames", "0")
    assert line == "kinema: error: --max-frames must be >= 1, got 0"


def test_bench_world_refuses_generation_flags_with_a_manifest(capsys, paths):
    argv = ["bench", "world", "--manifest", "m.jsonl", "--json", "r.json", "--limit", "-7"]
    line = error_line(capsys, *argv, "--steps", "-1", "--model", "nomodel", "--mode", "i2v")
    assert "--manifest scores the manifest's existing clips" in line, line
    assert "--model, --limit, --mode, --steps" in line, line


def test_bench_world_checks_its_steps_before_loading_a_model(capsys, paths):
    line = error_line(
        capsys, "bench", "world", "--model", "nomodel", "--json", "r.json", "--steps", "0"
    )
    assert line == "kinema: error: --steps must be >= 1, got 0"


# --- world render writes what it can read back --------------------------------------------------


@pytest.mark.parametrize("out", ["rnew", "rp_%03d.png", "r.gif", "adir"])
def test_world_render_refuses_anything_but_mp4_before_rendering(capsys, paths, out):
    line = error_line(capsys, "world", "render", "a red ball", "-o", out, "--frames", "3")
    assert line == f"kinema: error: -o/--out {out}: use a name ending in .mp4"
    assert nothing_written()
    assert not any(Path("adir").iterdir())


# --- help, seeds, exit codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "sub"),
    [
        ("bench", "compare"),
        ("world", "render"),
        ("vae", "replace"),
        ("video", "info"),
        ("data", "scan"),
    ],
)
def test_a_group_alone_prints_its_own_help(capsys, group, sub):
    code, out, _ = run(capsys, group)
    assert code == 2
    assert f"usage: kinema {group}" in out and f"{group} commands" in out and sub in out
    assert "expand" not in out  # not the top-level list


def test_demo_uses_one_seed_for_every_clip_and_prints_it(capsys, tmp_path, monkeypatch):
    import kinema.cli
    import kinema.hub

    seeds: list[int] = []

    def render(prompt, out, width, height, frames, fps, seed):
        seeds.append(seed)
        return out, 1.0

    monkeypatch.setattr(kinema.hub, "DEFAULT_MODEL_DIR", tmp_path / "no-model")
    monkeypatch.setattr(kinema.cli, "_render_prompt", render)
    code, out, err = run(capsys, "demo", "--out", str(tmp_path / "demo"), "--seed", "-1")
    assert code == 0, err
    assert len(seeds) == 3 and len(set(seeds)) == 1 and seeds[0] >= 0
    assert f"seed {seeds[0]}" in out


def test_video_info_on_bad_input_exits_2_like_every_command(capsys, tmp_path):
    path = tmp_path / "bad.mp4"
    path.write_bytes(b"not a video")
    line = error_line(capsys, "video", "info", str(path))
    assert line.startswith("kinema: error:") and str(path) in line
