"""Generate a WorldBench prompt suite with a text-to-video model, for scoring.

Each suite entry names its prompt, size, frame count, frame rate and seed; the model makes one
clip per entry (with ``given_frames=1``, image to video from the entry's scene's first frame,
rendered; with ``given_frames=k > 1``, extend forward from its first k frames; either way the
score says whether the motion, bounces, camera and occlusion that follow them match the prompt),
written as mp4 next to a manifest whose records carry the entry's spec, so
`kinema.world.evaluate.evaluate_manifest` scores the clips exactly like rendered ones. A clip
already on disk is kept, so an interrupted run continues where it stopped; the folder records the
settings its clips were made with (`settings.json`) and refuses to continue under other settings,
so clips of one model are never scored as another's (until it holds a clip, a rerun's settings
replace those of a run that failed).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from kinema.atomic import atomic_write_text
from kinema.video import write_video
from kinema.world.dataset import MANIFEST
from kinema.world.render import render_scene
from kinema.world.spec import SceneSpec

TextField = Literal["prompt", "caption"]

# what a generator gets for one entry: text, width, height, frames, fps, seed -> (T, H, W, 3)
# uint8; with one given frame also image=(H, W, 3) uint8, the frame the clip must start from;
# with more, video=(k, H, W, 3) uint8, the frames it must start with (and give back as they are)
ClipGenerator = Callable[..., np.ndarray]

SETTINGS = "settings.json"


def pipeline_generator(
    pipe: Any,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    image_first: bool | None = None,
    solver: str | None = None,
    camera_noise: float | None = None,
    held_start: float | None = None,
) -> ClipGenerator:
    """A ClipGenerator over a `kinema.pipeline.Pipeline`: text to video, image to video when
    given an image, extend forward when given a video (the clip is the video and the frames
    added to it); None: the model's default (for the mode). `solver` is a
    `kinema.sampling.Solver` value; `camera_noise` the share of camera-primed starting noise
    (`kinema.camera_noise`); `held_start` where windows continuing a video start
    (`kinema.held_start`)."""

    def generate(
        text: str,
        width: int,
        height: int,
        frames: int,
        fps: float,
        seed: int,
        image: np.ndarray | None = None,
        video: np.ndarray | None = None,
    ):
        mode = "t2v" if image is None else "i2v"
        if video is not None:
            mode, frames = "extend-forward", frames - len(video)
        out = pipe(
            text,
            mode=mode,
            image=image,
            video=video,
            width=width,
            height=height,
            num_frames=frames,
            fps=fps,
            seed=seed,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            image_first=image_first,
            solver=solver,
            camera_noise=camera_noise,
            held_start=held_start,
        )
        return out.frames

    return generate


def generate_suite(
    generate: ClipGenerator,
    entries: list[dict[str, Any]],
    out_dir: str | os.PathLike[str],
    text: TextField = "prompt",
    progress: bool = True,
    settings: dict[str, Any] | None = None,
    given_frames: int = 0,
) -> Path:
    """Make one clip per suite entry in `out_dir` and write its manifest; returns the manifest.

    `settings` (JSON-serializable: model, sampler, ...) describe what makes the clips; they are
    stored in the folder, and a folder holding clips made under other settings is refused.
    `given_frames`: 0 for text to video; 1 passes each entry's scene's first frame, rendered, as
    ``image=`` (image to video); k > 1 its first k frames as ``video=`` (extend forward)."""
    if text not in ("prompt", "caption"):
        raise ValueError(f"text must be 'prompt' or 'caption', got {text!r}")
    if given_frames < 0 or any(given_frames >= int(e["frames"]) for e in entries):
        shortest = min((int(e["frames"]) for e in entries), default=0)
        raise ValueError(
            f"given_frames must be from 0 to one less than the shortest entry's frames "
            f"({shortest}), got {given_frames}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    claim = {**(settings or {}), "text": text}
    if given_frames == 1:  # recorded only when set, so folders made before stay valid
        claim["first_frame"] = True
    elif given_frames > 1:
        claim["given_frames"] = given_frames
    _claim_folder(out, claim)
    records = []
    for entry in tqdm(entries, desc="generating suite", unit="clip", disable=not progress):
        name = f"{entry['id']}.mp4"
        path = out / name
        if not path.is_file():
            given = {}
            if given_frames:
                start = scene_frames(entry, given_frames)
                given = {"image": start[0]} if given_frames == 1 else {"video": start}
            frames = generate(
                entry[text],
                int(entry["width"]),
                int(entry["height"]),
                int(entry["frames"]),
                float(entry["fps"]),
                int(entry["seed"]),
                **given,
            )
            write_video(path, frames, fps=float(entry["fps"]))
        records.append({**entry, "path": name})
    return atomic_write_text(out / MANIFEST, "".join(json.dumps(r) + "\n" for r in records))


def scene_frames(entry: dict[str, Any], n: int) -> np.ndarray:
    """The first `n` frames (n, H, W, 3) uint8 of a suite entry's scene, as the world renders
    them."""
    spec = SceneSpec.from_dict(entry["spec"])
    return render_scene(dataclasses.replace(spec, num_frames=n))


def _claim_folder(out: Path, settings: dict[str, Any]) -> None:
    """Record `settings` in `out`, or check them against the ones its clips were made with; those
    of a folder holding no clip yet (a run that failed before its first) are replaced."""
    settings = json.loads(json.dumps(settings))  # as they read back: tuples become lists
    path = out / SETTINGS
    clips = any(out.glob("*.mp4"))
    if path.is_file() and clips:
        stored = json.loads(path.read_text())
        if stored != settings:
            old = {k: stored.get(k, "(unset)") for k in {*stored, *settings}}
            new = {k: settings.get(k, "(unset)") for k in old}
            keys = sorted(k for k in old if old[k] != new[k])
            diff = ", ".join(f"{k}: {old[k]!r} there, {new[k]!r} now" for k in keys)
            raise ValueError(
                f"{out} holds clips made with other settings ({diff}); "
                "pass another output folder (--out) or delete this one"
            )
        return
    if clips:
        raise ValueError(
            f"{out} holds clips but no {SETTINGS}, so what made them is unknown; "
            "pass another output folder (--out) or delete this one"
        )
    atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")
