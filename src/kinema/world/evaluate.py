"""Score a manifest of videos with WorldBench and write the report.

Each video is decoded and analyzed once; its checks are then scored against its own spec or, with
`shuffle_seed`, against the spec of another clip (a derangement), which measures WorldBench's
chance level. Beside the checks, each clip gets its palette share, the share of its pixels in
the world's colours (:mod:`kinema.world.look`), and the report their mean.
"""

from __future__ import annotations

from multiprocessing import get_context
from typing import Any

import numpy as np
from tqdm import tqdm

from kinema.video import VideoError, read_video
from kinema.world.bench import BenchResult, analyze_video, score_video, summarize
from kinema.world.dataset import resolve_workers
from kinema.world.look import palette_share
from kinema.world.spec import SceneSpec


def _score_one(job: tuple[str, dict[str, Any]]) -> tuple[str, tuple[BenchResult, float] | str]:
    """A video's checks against the spec and its palette share, or why it could not be read."""
    path, spec_dict = job
    try:
        frames = read_video(path).frames
    except VideoError as e:
        return path, str(e)
    spec = SceneSpec.from_dict(spec_dict)
    return path, (score_video(analyze_video(frames), spec), palette_share(frames))


def derangement(n: int, seed: int) -> np.ndarray:
    """A permutation of range(n) with no fixed point (n >= 2)."""
    if n < 2:
        raise ValueError(f"shuffling specs needs at least 2 clips, got {n}")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return perm


def evaluate_manifest(
    records: list[dict[str, Any]],
    shuffle_seed: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """WorldBench report for manifest records (`path` and `spec` fields), scored by `workers`
    processes (kinema.world.dataset.resolve_workers; None: one per core, at most 8).

    Unreadable videos are counted in `unreadable`, fail every check of their spec and have no
    palette share (None; the report's `palette_share` is the mean over readable clips).
    """
    if not records:
        raise ValueError("the manifest holds no clips: WorldBench has nothing to score")
    missing = [r.get("path", f"record {i}") for i, r in enumerate(records) if "spec" not in r]
    if missing:
        raise ValueError(
            f"{len(missing)} manifest record(s) have no 'spec' field (first: {missing[0]}); "
            "WorldBench scores videos against world specs: use a manifest from "
            "`kinema world make` or a generated suite"
        )
    specs = [r["spec"] for r in records]
    if shuffle_seed is not None:
        specs = [specs[i] for i in derangement(len(records), shuffle_seed)]
    jobs = [(r["path"], s) for r, s in zip(records, specs, strict=True)]
    workers = resolve_workers(workers)
    if workers > 1 and len(jobs) >= 4:
        with get_context("spawn").Pool(workers) as pool:
            scored = list(
                tqdm(
                    pool.imap(_score_one, jobs, chunksize=4),
                    total=len(jobs),
                    desc="WorldBench",
                    unit="clip",
                    disable=not progress,
                )
            )
    else:
        scored = [_score_one(j) for j in tqdm(jobs, desc="WorldBench", disable=not progress)]
    results, clips, unreadable, shares = [], [], [], []
    for (path, outcome), spec in zip(scored, specs, strict=True):
        if isinstance(outcome, str):
            unreadable.append({"path": path, "error": outcome})
            result, share = _all_failed(SceneSpec.from_dict(spec)), None
        else:
            result, share = outcome
            shares.append(share)
        results.append(result)
        clips.append(
            {
                "path": path,
                "overall": result.overall,
                "palette_share": share,
                "checks": [c.__dict__ for c in result.checks],
            }
        )
    report = summarize(results)
    report["palette_share"] = float(np.mean(shares)) if shares else None
    report.update(shuffled=shuffle_seed is not None, unreadable=len(unreadable))
    report["unreadable_files"] = unreadable
    report["clips"] = clips
    return report


def _all_failed(spec: SceneSpec) -> BenchResult:
    """The checks `spec` would get from a video with nothing in it, all failed."""
    empty = np.zeros((max(spec.num_frames, 2), spec.height, spec.width, 3), np.uint8)
    result = score_video(analyze_video(empty), spec)
    for check in result.checks:
        check.passed = False
        check.detail = "video unreadable"
    return result
