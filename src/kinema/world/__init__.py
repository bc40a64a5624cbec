"""Kinema's procedural world: scene specs, physics, rendering, captions, and WorldBench.

spec.py      the vocabulary and the SceneSpec dataclass (JSON round-trippable)
sampler.py   random valid scenes
physics.py   object trajectories and the camera path
render.py    anti-aliased frames from a spec
captions.py  short prompts and detailed captions
dataset.py   mp4 clips + manifest.jsonl
vision.py    classical vision used by WorldBench
bench.py     WorldBench checks; evaluate.py scores a manifest; suite.py the prompt suite
"""

from kinema.world.render import render_scene
from kinema.world.sampler import sample_scene
from kinema.world.spec import SceneSpec

__all__ = ["SceneSpec", "render_scene", "sample_scene"]
