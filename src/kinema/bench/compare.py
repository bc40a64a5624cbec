"""Paired comparison of two WorldBench reports (`kinema bench compare A B`).

Two reports of the same suite, made with the same seeds, score the same prompts clip by clip, so
their difference is best judged pairwise: resample the prompts (a bootstrap over clips, the same
draw for both reports) and recompute each pass rate as the report does, micro-averaged over the
checks of the drawn clips. The result gives B minus A for the overall pass rate, each category
and the palette share, each with a 95% interval. An interval that holds 0 is a difference the
suite cannot tell from the luck of the prompts drawn.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import numpy as np

from kinema.world.bench import CATEGORIES

__all__ = ["compare_reports", "format_comparison"]


def _clips(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    clips = report.get("clips")
    if not isinstance(clips, list) or not clips:
        raise ValueError(
            f"report {name} has no per-clip results ('clips'); pass a report "
            "written by `kinema bench world --json`"
        )
    return clips


def _counts(clips: list[dict[str, Any]], category: str | None) -> np.ndarray:
    """(clips, 2): checks passed and checks made per clip (in one category, or all)."""
    rows = []
    for clip in clips:
        checks = [c for c in clip["checks"] if category is None or c["category"] == category]
        rows.append([sum(bool(c["passed"]) for c in checks), len(checks)])
    return np.array(rows, dtype=np.float64).reshape(len(clips), 2)


def _rate(counts: np.ndarray, index: np.ndarray) -> np.ndarray:
    made = counts[index, 1].sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts[index, 0].sum(-1) / made  # NaN where a draw holds no check


def _interval(diffs: np.ndarray) -> list[float] | None:
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 0:
        return None
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return [float(lo), float(hi)]


def _row(a: np.ndarray, b: np.ndarray, draws: np.ndarray) -> dict[str, Any] | None:
    whole = np.arange(len(a))[None]
    if a[:, 1].sum() == 0 or b[:, 1].sum() == 0:
        return None
    rate_a, rate_b = float(_rate(a, whole)[0]), float(_rate(b, whole)[0])
    return {
        "a": rate_a,
        "b": rate_b,
        "diff": rate_b - rate_a,
        "ci95": _interval(_rate(b, draws) - _rate(a, draws)),
        "checks": [int(a[:, 1].sum()), int(b[:, 1].sum())],
    }


def _palette(a: list[dict], b: list[dict], draws: np.ndarray) -> dict[str, Any] | None:
    shares = np.array(
        [[x.get("palette_share"), y.get("palette_share")] for x, y in zip(a, b, strict=True)],
        dtype=np.float64,  # None -> NaN
    )
    both = np.isfinite(shares).all(1)
    if not both.any():
        return None
    weights = both[draws].astype(np.float64)  # a clip counts where both reports scored it
    paired = np.nan_to_num(shares[draws, 1] - shares[draws, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        diffs = (paired * weights).sum(-1) / weights.sum(-1)
    mean_a, mean_b = shares[both, 0].mean(), shares[both, 1].mean()
    return {
        "a": float(mean_a),
        "b": float(mean_b),
        "diff": float(mean_b - mean_a),
        "ci95": _interval(diffs),
        "clips": int(both.sum()),
    }


def compare_reports(
    a: dict[str, Any],
    b: dict[str, Any],
    limit: int | None = None,
    draws: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """B minus A over their first ``limit`` clips (all by default), paired clip by clip.

    Both reports must hold the same number of clips (after ``limit``), and the i-th clip of each
    the same prompt at the same seed, as `kinema bench world` makes them: where both name their
    videos, the file names must agree (wb-0000.mp4 ...).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (the first N clips of both reports), got {limit}")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    clips_a, clips_b = _clips(a, "A")[:limit], _clips(b, "B")[:limit]
    if len(clips_a) != len(clips_b):
        raise ValueError(
            f"the reports hold {len(clips_a)} and {len(clips_b)} clips; a paired comparison "
            f"needs the same prompts in both (pass --limit {min(len(clips_a), len(clips_b))} "
            "to compare the first clips of each)"
        )
    for i, (x, y) in enumerate(zip(clips_a, clips_b, strict=True)):
        name_a, name_b = PurePath(x.get("path", "")).name, PurePath(y.get("path", "")).name
        if name_a and name_b and name_a != name_b:
            raise ValueError(
                f"clip {i} is {name_a} in A and {name_b} in B: the reports are not of the same "
                "prompts (compare reports of one suite, made by `kinema bench world`)"
            )
    n = len(clips_a)
    index = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    categories = {}
    for category in CATEGORIES:
        row = _row(_counts(clips_a, category), _counts(clips_b, category), index)
        if row is not None:
            categories[category] = row
    return {
        "clips": n,
        "draws": draws,
        "seed": seed,
        "overall": _row(_counts(clips_a, None), _counts(clips_b, None), index),
        "categories": categories,
        "palette_share": _palette(clips_a, clips_b, index),
    }


def format_comparison(result: dict[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    """A table of the comparison: A, B, B - A and its 95% interval per row."""

    def line(label: str, row: dict[str, Any] | None) -> str:
        if row is None:
            return f"{label:<16}{'-':>8}"
        ci = row["ci95"]
        interval = f"{ci[0]:+.3f} to {ci[1]:+.3f}" if ci else "-"
        return f"{label:<16}{row['a']:>8.3f}{row['b']:>8.3f}{row['diff']:>+9.3f}   {interval}"

    lines = [
        f"A: {name_a}",
        f"B: {name_b}",
        f"{result['clips']} paired clips, {result['draws']} bootstrap draws",
        f"{'':<16}{'A':>8}{'B':>8}{'B - A':>9}   95% interval",
        line("overall", result["overall"]),
    ]
    lines += [line(name, row) for name, row in result["categories"].items()]
    lines.append(line("palette share", result["palette_share"]))
    return "\n".join(lines)
