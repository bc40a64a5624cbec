"""Paired comparison of WorldBench reports (kinema.bench.compare, `kinema bench compare`)."""

from __future__ import annotations

import numpy as np
import pytest

from kinema.bench.compare import compare_reports, format_comparison
from kinema.cli import main
from kinema.reports import read_report, write_report


def report(passes: list[list[bool]], palette: list[float | None] | None = None) -> dict:
    """A report whose i-th clip has one colour check and one motion check per entry."""
    clips = []
    for i, checks in enumerate(passes):
        clip = {
            "path": f"clip{i}.mp4",
            "checks": [
                {"category": "color" if j % 2 == 0 else "motion", "name": "x", "passed": p}
                for j, p in enumerate(checks)
            ],
        }
        if palette is not None:
            clip["palette_share"] = palette[i]
        clips.append(clip)
    return {"clips": clips}


def test_a_report_against_itself_differs_by_exactly_zero():
    rng = np.random.default_rng(0)
    a = report(rng.random((40, 2)).round().astype(bool).tolist(), rng.random(40).tolist())
    result = compare_reports(a, a, draws=500)
    assert result["clips"] == 40
    for row in [result["overall"], result["palette_share"], *result["categories"].values()]:
        assert row["diff"] == 0.0 and row["ci95"] == [0.0, 0.0]


def test_a_clear_gain_has_an_interval_above_zero_and_a_tie_one_around_it():
    rng = np.random.default_rng(1)
    a = report(rng.random((60, 2)).__lt__(0.3).tolist())
    b = report([[True, True] for _ in range(60)])
    gain = compare_reports(a, b, draws=2000)
    assert gain["overall"]["diff"] == pytest.approx(1.0 - gain["overall"]["a"])
    assert gain["overall"]["ci95"][0] > 0.5
    noise = report(rng.random((60, 2)).__lt__(0.3).tolist())
    tie = compare_reports(a, noise, draws=2000)
    low, high = tie["overall"]["ci95"]
    assert low < tie["overall"]["diff"] < high and low < 0.1 and high > -0.1
    assert gain["palette_share"] is None  # neither report has one


def test_rates_are_micro_averaged_over_checks_as_the_report_computes_them():
    a = report([[True], [False, False, False, False]])  # 1 of 5 checks
    b = report([[False], [True, True, True, True]])  # 4 of 5
    result = compare_reports(a, b, draws=10)
    assert result["overall"]["a"] == pytest.approx(0.2)
    assert result["overall"]["b"] == pytest.approx(0.8)
    assert result["categories"]["color"]["checks"] == [3, 3]
    assert result["categories"]["motion"]["checks"] == [2, 2]
    assert "bounce" not in result["categories"]  # no checks in either


def test_palette_share_pairs_only_clips_scored_in_both():
    a = report([[True]] * 3, [0.5, None, 0.7])
    b = report([[True]] * 3, [0.6, 0.9, 0.9])
    palette = compare_reports(a, b, draws=200)["palette_share"]
    assert palette["clips"] == 2
    assert palette["diff"] == pytest.approx(0.15)
    assert palette["ci95"][0] >= 0.1 - 1e-9 and palette["ci95"][1] <= 0.2 + 1e-9


def test_mismatched_reports_are_refused_and_limit_pairs_their_first_clips():
    a, b = report([[True]] * 5), report([[False]] * 3)
    with pytest.raises(ValueError, match=r"hold 5 and 3 clips.*pass --limit 3"):
        compare_reports(a, b)
    assert compare_reports(a, b, limit=3)["clips"] == 3
    with pytest.raises(ValueError, match="limit must be >= 1"):
        compare_reports(a, b, limit=0)
    held_out = report([[True]] * 3)
    for i, clip in enumerate(held_out["clips"]):
        clip["path"] = f"wh-{i:04d}.mp4"
    with pytest.raises(ValueError, match=r"clip 0 is clip0\.mp4 in A and wh-0000\.mp4 in B"):
        compare_reports(a, held_out, limit=3)
    with pytest.raises(ValueError, match="report B has no per-clip results"):
        compare_reports(a, {"overall": 0.5})


def test_the_command_prints_the_table_and_writes_the_comparison(tmp_path, capsys):
    a, b = tmp_path / "a.json.gz", tmp_path / "b.json"
    write_report(a, report([[True, False]] * 4, [0.5] * 4))
    write_report(b, report([[True, True]] * 4, [0.75] * 4))
    out = tmp_path / "cmp.json"
    assert main(["bench", "compare", str(a), str(b), "--draws", "100", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 paired clips" in printed and "+0.500" in printed and "palette share" in printed
    saved = read_report(out)
    assert saved["a"] == str(a) and saved["overall"]["diff"] == pytest.approx(0.5)
    assert saved["palette_share"]["diff"] == pytest.approx(0.25)
    assert format_comparison(compare_reports(read_report(a), read_report(b), draws=10)).startswith(
        "A: A\nB: B"
    )
