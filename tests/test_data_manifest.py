"""Manifests: reading the world's, writing atomically, scanning folders, `kinema data scan`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from kinema.cli import main
from kinema.data import ClipRecord, read_manifest, scan_folder, write_manifest
from kinema.video import write_video
from kinema.world.dataset import make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    sizes = [(64, 64), (96, 64)]
    return make_world(out, n=2, seed=5, sizes=sizes, num_frames=9, workers=1, progress=False)


def test_reads_the_worlds_manifest(world):
    records = read_manifest(world)
    assert len(records) == 2
    first = records[0]
    assert Path(first.path).is_absolute() and Path(first.path).is_file()
    assert (first.width, first.height, first.frames, first.fps) == (64, 64, 9, 8.0)
    assert first.prompt and first.caption and "spec" in first.extra
    assert (records[1].width, records[1].height) == (96, 64)


def test_write_manifest_round_trips_with_relative_paths(world, tmp_path):
    records = read_manifest(world)
    moved = world.parent / "copy.jsonl"
    write_manifest(records, moved)
    assert '"path": "clip_000000.mp4"' in moved.read_text()  # inside the folder: relative
    assert read_manifest(moved) == records
    outside = tmp_path / "elsewhere.jsonl"
    write_manifest(records, outside)
    assert read_manifest(outside) == records  # outside: absolute paths
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_read_manifest_names_the_bad_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "a.mp4", "width": 64, "height": 64, "frames": 9, "fps": 8}\n'
                    '{"path": "b.mp4", "width": 64, "height": 64, "fps": 8}\n')  # fmt: skip
    with pytest.raises(ValueError, match=r"m.jsonl:2: 'frames' must be a positive int, got None"):
        read_manifest(path)
    path.write_text("not json\n")
    with pytest.raises(ValueError, match=r"m.jsonl:1: not valid JSON"):
        read_manifest(path)


def make_folder(world: Path, root: Path) -> Path:
    """Two world clips (one with a caption, one in a subfolder), an image, a corrupt file."""
    (root / "sub").mkdir(parents=True)
    shutil.copy(world.parent / "clip_000000.mp4", root / "a.mp4")
    (root / "a.txt").write_text("  A pink disk rolls right.\n")
    shutil.copy(world.parent / "clip_000001.mp4", root / "sub" / "b.mp4")
    frame = np.random.default_rng(0).integers(0, 255, (1, 40, 56, 3), dtype=np.uint8)
    write_video(root / "still.png", frame)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (root / ".hidden.mp4").write_bytes(b"ignored")
    (root / "notes.md").write_text("not media")
    return root


def test_scan_finds_videos_images_captions_and_counts_unreadable(world, tmp_path):
    folder = make_folder(world, tmp_path / "media")
    report = scan_folder(folder, folder / "manifest.jsonl", progress=False)
    assert (report.found, report.readable, report.with_captions) == (4, 3, 1)
    assert [Path(p).name for p, _ in report.skipped] == ["broken.mp4"]
    records = {Path(r.path).name: r for r in read_manifest(report.manifest)}
    assert set(records) == {"a.mp4", "b.mp4", "still.png"}
    assert records["a.mp4"].caption == "A pink disk rolls right." and records["a.mp4"].frames == 9
    assert records["b.mp4"].caption is None and records["b.mp4"].width == 96
    assert (records["still.png"].frames, records["still.png"].width) == (1, 56)
    flat = scan_folder(folder, tmp_path / "flat.jsonl", recursive=False, progress=False)
    assert flat.found == 3


def test_data_scan_command_prints_a_summary(world, tmp_path, capsys):
    folder = make_folder(world, tmp_path / "media")
    out = tmp_path / "scan.jsonl"
    assert main(["data", "scan", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "found 4 media files: 3 readable, 1 skipped, 1 with captions" in printed
    assert "broken.mp4" in printed and out.is_file()
    assert isinstance(read_manifest(out)[0], ClipRecord)


def test_scan_decodes_utf8_16_32_captions_and_reports_others(tmp_path, capsys):
    folder = tmp_path / "media"
    folder.mkdir()
    captions = {
        "plain": "café au lait".encode(),
        "bom8": "café au lait".encode("utf-8-sig"),
        "bom16": "café au lait".encode("utf-16"),  # with its BOM
        "bom32": "café au lait".encode("utf-32"),
        "latin1": "café au lait".encode("latin-1"),  # not UTF-8 and no BOM: reported
        "nobom16": "a red ball".encode("utf-16-le"),  # valid UTF-8 but NULs: reported
    }
    frame = np.zeros((1, 16, 16, 3), np.uint8)
    for name, data in captions.items():
        write_video(folder / f"{name}.png", frame)
        (folder / f"{name}.txt").write_bytes(data)
    report = scan_folder(folder, tmp_path / "m.jsonl", progress=False)
    records = {Path(r.path).stem: r.caption for r in read_manifest(report.manifest)}
    assert records == {**dict.fromkeys(["plain", "bom8", "bom16", "bom32"], "café au lait"),
                       "latin1": None, "nobom16": None}  # fmt: skip
    assert [Path(p).name for p, _ in report.bad_captions] == ["latin1.txt", "nobom16.txt"]
    summary = report.summary()
    assert "6 readable, 0 skipped, 4 with captions, 2 captions undecodable" in summary
    assert "caption skipped" in summary and "latin1.txt: not utf-8-sig" in summary
    assert "nobom16.txt: NUL characters" in summary
