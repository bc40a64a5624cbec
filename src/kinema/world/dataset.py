"""Write world clips to disk: mp4 files plus `manifest.jsonl`, one JSON object per clip.

Clip `i` of a data set with seed `s` is drawn from its own generator, `default_rng([s, i])`, so a
clip never depends on how many workers rendered the set or on the clips before it: the same seed
gives identical specs, captions and rendered frames. The H.264 encoder (libx264) is not always
bit-exact between runs, so decoded mp4 pixels can differ by compression noise; `spec` in the
manifest re-renders the exact frames.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kinema.atomic import atomic_write
from kinema.jsonl import read_json_objects
from kinema.video import check_fps, write_video
from kinema.world.captions import detailed_caption, short_prompt
from kinema.world.render import render_scene
from kinema.world.sampler import sample_scene
from kinema.world.spec import Camera, SceneSpec
from kinema.world.suite import HELDOUT_PAIRS

MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class ClipRequest:
    """What to draw for clip `index` of a data set."""

    index: int
    seed: int
    width: int
    height: int
    num_frames: int
    fps: float
    exclude_heldout: bool = False  # leave out WorldBench's held-out (color, shape) pairs
    camera: Camera | None = None  # this camera move (None: drawn like everything else)


def parse_size(text: str) -> tuple[int, int]:
    """'96x64' → (96, 64); raises ValueError naming the text and the expected form."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 64x64 or 96x64") from e
    if w < 8 or h < 8:
        raise ValueError(f"size {text!r} is too small: width and height must be >= 8")
    if w % 2 or h % 2:
        even = f"{w - w % 2}x{h - h % 2} or {w + w % 2}x{h + h % 2}"
        raise ValueError(f"size {text!r} is odd; H.264 (yuv420p) clips need even sizes: {even}")
    return w, h


def parse_camera(text: str) -> Camera:
    """'pan left' → Camera.PAN_LEFT; raises ValueError naming the text and the valid moves."""
    try:
        return Camera(text.strip().lower())
    except ValueError:
        valid = ", ".join(repr(c.value) for c in Camera)
        raise ValueError(f"camera {text!r} is not a camera move; valid: {valid}") from None


def clip_record(request: ClipRequest) -> tuple[SceneSpec, dict[str, Any]]:
    """The spec and the manifest fields (less the path) of one clip; pure and deterministic."""
    rng = np.random.default_rng([request.seed, request.index])
    exclude = HELDOUT_PAIRS if request.exclude_heldout else ()
    spec = sample_scene(
        rng,
        request.width,
        request.height,
        request.num_frames,
        request.fps,
        camera=request.camera,
        exclude_pairs=exclude,
    )
    spec.extras.update(seed=request.seed, index=request.index)
    text_rng = np.random.default_rng([request.seed, request.index, 1])
    record = {
        "prompt": short_prompt(spec, text_rng),
        "caption": detailed_caption(spec, text_rng),
        "spec": spec.to_dict(),
        "width": spec.width,
        "height": spec.height,
        "frames": spec.num_frames,
        "fps": spec.fps,
        "seed": request.seed,
        "index": request.index,
    }
    return spec, record


def _render_and_write(job: tuple[ClipRequest, str]) -> dict[str, Any]:
    request, out_dir = job
    spec, record = clip_record(request)
    name = f"clip_{request.index:06d}.mp4"
    write_video(Path(out_dir) / name, render_scene(spec), fps=spec.fps)
    return {"path": name, **record}


def make_world(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] = ((64, 64),),
    num_frames: int = 33,
    fps: float = 8.0,
    workers: int | None = None,
    progress: bool = True,
    exclude_heldout: bool = False,
    cameras: Sequence[Camera] = (),
) -> Path:
    """Render `n` clips into `out_dir` and write its manifest; returns the manifest's path.

    Clip `i` uses `sizes[i % len(sizes)]` and, when `cameras` names any, the camera move
    `cameras[i % len(cameras)]` (a set of pans only, say); else its camera is drawn. Paths in the
    manifest are relative to `out_dir`. `exclude_heldout` leaves WorldBench's held-out (color,
    shape) pairs out of every scene. `workers`: processes (see `resolve_workers`; None or 0: one
    per core, at most 8; 1: in this process).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if num_frames < 1:
        raise ValueError(f"frames must be >= 1, got {num_frames}")
    fps = check_fps(fps)  # the clips' writer's range
    workers = resolve_workers(workers)
    if not sizes:
        raise ValueError("sizes must name at least one WIDTHxHEIGHT")
    for width, height in sizes:
        parse_size(f"{width}x{height}")  # the same checks as on the command line
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (
            ClipRequest(
                i,
                seed,
                *sizes[i % len(sizes)],
                num_frames,
                fps,
                exclude_heldout,
                cameras[i % len(cameras)] if cameras else None,
            ),
            str(out),
        )
        for i in range(n)
    ]
    records = tqdm(
        _map(jobs, workers), total=n, desc="rendering world", unit="clip", disable=not progress
    )

    def write(tmp: Path) -> None:
        with tmp.open("w") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")

    return atomic_write(out / MANIFEST, write)


def resolve_workers(workers: int | None) -> int:
    """Processes for `workers`: None or 0 mean one per core, at most 8; a negative count or a
    non-int raises ValueError."""
    if isinstance(workers, bool) or not isinstance(workers, int | None) or (workers or 0) < 0:
        raise ValueError(
            f"workers must be an int >= 1 (or 0 / None: one per core, at most 8), got {workers!r}"
        )
    return workers or min(os.cpu_count() or 1, 8)


def _map(jobs: list[tuple[ClipRequest, str]], workers: int) -> Iterator[dict[str, Any]]:
    if workers <= 1 or len(jobs) < 4:
        yield from map(_render_and_write, jobs)
        return
    with get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_render_and_write, jobs, chunksize=8)


def read_manifest(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records of a manifest as written (every field, `spec` included), with `path` made absolute;
    raises ValueError naming a bad line. `kinema.data.read_manifest` reads the same files into
    checked `ClipRecord`s for training."""
    path = Path(path)
    records = []
    for where, record in read_json_objects(path):
        if "path" not in record:
            raise ValueError(f"{where}: expected a JSON object with a 'path' field")
        record["path"] = str((path.parent / record["path"]).resolve())
        records.append(record)
    if not records:
        raise ValueError(f"manifest {path} holds no clips: nothing to read")
    return records
