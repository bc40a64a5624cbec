"""The default model's whole training in one resumable command: ``kinema train recipe``.

    kinema train recipe --out runs/recipe                    # the shipped model's recipe
    kinema train recipe --out runs/r --clips 3000 --steps 4000 --set optim.decay_steps=300
    kinema train recipe --out runs/full --train-vae          # the VAE from random weights too

It runs, in order, the commands the model card lists one by one:

    vae-short    with --train-vae: a VAE from random weights on images and clips of <= 9 frames
    vae-long     with --train-vae: that VAE on clips of up to 33 frames
    vae-decoder  with --train-vae: its decoder alone, on latents with noise added, so that it
                 forgives the transformer's errors (the latents stay those of vae-long)
    world        render the training clips (WorldBench's held-out pairs left out)
    world-cache  their VAE latents and text tokens
    pans         render the clips that pan, for the high-noise expert
    pans-cache   their latents and text tokens
    transformer  train the DiT on the world cache (the `world-tiny` preset, `--set` on top)
    base         export its EMA weights, the transformer in bf16
    expert       fine-tune the transformer at high noise on the pans (the `world-expert` preset)
    model        export the base with the expert as int8 differences: OUT/model

The VAE is given (``--vae``, default the shipped one), or trained first with ``--train-vae``:
the two commands of docs/vae.md, "From scratch in one sitting" (3,000 + 400 steps; the shipped
VAE took longer runs), then 400 decoder-only steps on noised latents (docs/training.md, "The same
with `tiny-s4r`"). Every stage resumes: a rendered world whose manifest is written is not
rendered again, the cache skips its finished shards, the trainers resume from their latest
checkpoint, and the exports are rewritten. So a killed recipe rerun with the same arguments
carries on where it was; rerun with other arguments in the same folder, it refuses and names
what changed. The one change it takes is `--steps` while the transformer's schedule has not
begun to decay: its warmup-stable-decay rate is the same up to then whatever the step count, so
a run can be lengthened (or shortened) midway and ends as if started with the new count.
``--hours H`` fits the whole recipe into H hours of wall time on the machine it runs on: the
transformer, the last long stage before the expert, gets what the stages before it left, less
the expert's steps and the exports, and begins its decay when that time affords no more steps
(`kinema.train.deadline`; `--steps` is then the most it takes). `--hours` too may change while
the decay has not begun. ``OUT/recipe.json`` records the arguments and each stage's wall time.
With a GPU, the transformer's training and the caching run on it (`kinema.train.parallel`); the
VAE's trainer runs on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from kinema.atomic import atomic_write_text

if TYPE_CHECKING:
    from kinema.compression.train import VAETrainConfig
    from kinema.train.config import TrainConfig

__all__ = [
    "PANS",
    "SCRATCH_VAE",
    "RecipeConfig",
    "StageUnfinishedError",
    "VAEStage",
    "WorldClips",
    "main",
    "run_recipe",
    "vae_config",
]

PANS = ("pan left", "pan right", "pan up", "pan down")  # the expert's cameras
RECORD = "recipe.json"


class StageUnfinishedError(RuntimeError):
    """A training stage stopped before its last step (its time budget); rerun to resume."""


@dataclass(frozen=True)
class WorldClips:
    """Procedural clips for one stage (`kinema world make`)."""

    clips: int
    sizes: tuple[tuple[int, int], ...]
    frames: int
    seed: int
    cameras: tuple[str, ...] = ()  # cycled through the clips; empty: each clip draws its own


@dataclass(frozen=True)
class VAEStage:
    """One `kinema vae train` command of a VAE trained in the recipe, into OUT/NAME."""

    name: str
    steps: int
    overrides: tuple[str, ...]  # VAETrainConfig KEY=VALUE, on top of SCRATCH_VAE_BASE


# docs/vae.md, "From scratch in one sitting": both stages share these settings; tiny-s4r is the
# shipped VAE's architecture with residual shortcuts, which learns the same steps about 4 dB better
SCRATCH_VAE_BASE = (
    "preset=tiny-s4r",
    "chroma_weight=3",
    "sizes=[[64,64],[64,96],[96,64]]",
    'source_weights={"world":0.6,"video":0.2,"photo":0.2}',
    "threads=2",
)
# images and short clips teach the spatial compression cheaply (about 1.5 s a step on 2 CPU
# cores); then clips of up to 33 frames keep long clips from falling apart (about 4.4 s a step);
# then the decoder alone learns to forgive noise of std up to 0.3 in the latents (about 2 s a
# step), which took a 4-hour model's WorldBench from 0.452 to 0.469 (0.377 to 0.431 held out)
SCRATCH_VAE = (
    VAEStage("vae-short", 3000, ("lr=0.001", "warmup_steps=100", "lengths=[1,1,5,9]")),
    VAEStage("vae-long", 400, ("lr=0.0004", "warmup_steps=50", "lengths=[1,9,17,33]")),
    VAEStage(
        "vae-decoder",
        400,
        (
            "freeze_encoder=true",
            "latent_noise=0.3",
            "lr=0.0002",
            "warmup_steps=20",
            "lengths=[1,9,17]",
        ),
    ),
)


@dataclass(frozen=True)
class RecipeConfig:
    out_dir: str = "runs/recipe"
    vae: str | None = "models/default/vae"  # whose latents the transformer learns; None: trained
    vae_stages: tuple[VAEStage, ...] = ()  # with vae None: the stages that train it, in order
    world: WorldClips = WorldClips(9000, ((64, 64), (96, 64), (64, 96)), 33, seed=1)
    pans: WorldClips = WorldClips(2000, ((64, 64),), 17, seed=11, cameras=PANS)
    transformer: tuple[str, ...] = ()  # --set KEY=VALUE on the world-tiny preset
    expert: tuple[str, ...] | None = ()  # --set on the world-expert preset; None: no expert
    hours: float | None = None  # wall time for all stages: the transformer ends in time for it
    workers: int | None = None  # world rendering processes (None: up to 8, one per core)

    def __post_init__(self) -> None:
        # checked here, before the folder is claimed, not by a stage hours into the run
        if self.hours is not None and not self.hours > 0:
            raise ValueError(f"--hours must be positive, got {self.hours!r}")
        world_flags = {"clips": "--clips", "sizes": "--sizes", "frames": "--frames"}
        _check_clips(self.world, "world", world_flags)
        _check_clips(self.pans, "pans", {"clips": "--pan-clips"})
        w = self.workers
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w < 1):
            raise ValueError(f"--workers must be an int >= 1 or None, got {w!r}")
        if (self.vae is None) == (not self.vae_stages):
            raise ValueError(
                "a recipe takes either a VAE folder (vae) or the stages that train one "
                f"(vae_stages); got vae={self.vae!r} and {len(self.vae_stages)} stages"
            )

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    @property
    def vae_dir(self) -> str:
        """The VAE folder the transformer learns the latents of: given, or the last VAE stage's."""
        if self.vae is not None:
            return self.vae
        return str(self.out / self.vae_stages[-1].name / "vae")

    def to_dict(self) -> dict[str, Any]:
        """What the recipe makes (tuples as lists); `workers` changes only how fast."""
        made = {k: v for k, v in dataclasses.asdict(self).items() if k != "workers"}
        return json.loads(json.dumps(made))


def _check_clips(clips: WorldClips, stage: str, flags: dict[str, str]) -> None:
    """ValueError naming the flag (with the field, e.g. world.clips) of a value that
    `kinema.world.dataset.make_world` would refuse only once the stages before it have run."""
    from kinema.world.dataset import parse_camera, parse_size

    def name(key: str) -> str:
        return f"{flags[key]} ({stage}.{key})" if key in flags else f"{stage}.{key}"

    for key in ("clips", "frames", "seed"):
        value, low = getattr(clips, key), 0 if key == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name(key)} must be an int >= {low}, got {value!r}")
    if not clips.sizes:
        raise ValueError(f"{name('sizes')} must name at least one WIDTHxHEIGHT, e.g. 64x64")
    for key, parse, values in (
        ("sizes", parse_size, ["x".join(str(side) for side in size) for size in clips.sizes]),
        ("cameras", parse_camera, clips.cameras),
    ):
        for value in values:
            try:
                parse(value)  # the command line's checks, whose messages say what is valid
            except ValueError as e:
                raise ValueError(f"{name(key)}: {e}") from None


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[], Any]  # does the stage's work, resuming what a killed run left


def _on_folders(
    recipe: RecipeConfig, preset: str, out_dir: str, cache_dir: str, *items: str
) -> TrainConfig:
    """`preset` with its run and cache in this recipe's folder, on its VAE, then `items`."""
    from kinema.train.config import load_config

    out = recipe.out
    where = [f"out_dir={out / out_dir}", f"model.vae={recipe.vae_dir}"]
    where.append(f"data.options.cache_dir={out / cache_dir}")
    return load_config(None, [*where, *items], preset=preset)


def transformer_config(recipe: RecipeConfig) -> TrainConfig:
    """The transformer's TrainConfig: the `world-tiny` preset on this recipe's folders."""
    return _on_folders(recipe, "world-tiny", "transformer", "world-cache", *recipe.transformer)


def expert_config(recipe: RecipeConfig) -> TrainConfig:
    """The expert's TrainConfig: the `world-expert` preset from this recipe's base model, the
    same DiT as the transformer whatever `--set` made it."""
    base = transformer_config(recipe).model
    same = [
        f"model.init_from={recipe.out / 'base'}",
        f"model.preset={base.preset}",
        f"model.overrides={json.dumps(base.overrides)}",
        f"model.patch={json.dumps(list(base.patch))}",
        f"model.text_encoder={base.text_encoder}",
        f"model.text_max_length={base.text_max_length}",
    ]
    return _on_folders(
        recipe, "world-expert", "expert", "pans-cache", *same, *(recipe.expert or ())
    )


def vae_config(recipe: RecipeConfig, k: int) -> VAETrainConfig:
    """The VAETrainConfig of VAE stage `k`: from random weights (k = 0) or stage k - 1's VAE."""
    from kinema.compression.train import VAETrainConfig, apply_overrides

    stage = recipe.vae_stages[k]
    start = [] if k == 0 else [f"init_from={recipe.out / recipe.vae_stages[k - 1].name / 'vae'}"]
    items = [*SCRATCH_VAE_BASE, *start, f"out_dir={recipe.out / stage.name}"]
    return apply_overrides(VAETrainConfig(), [*items, f"steps={stage.steps}", *stage.overrides])


def train_vae(config: VAETrainConfig) -> Path:
    from kinema.compression.train import VAETrainer

    trainer = VAETrainer(config)
    exported = trainer.run()
    if trainer.step < config.steps:
        raise StageUnfinishedError(f"{config.out_dir} stopped at its time budget; rerun to resume")
    return exported


def render(clips: WorldClips, out: Path, workers: int | None) -> Path:
    """The stage's world, rendered unless its manifest (written last, atomically) exists."""
    from kinema.world.dataset import MANIFEST, make_world, parse_camera

    manifest = out / MANIFEST
    if manifest.is_file():
        return manifest
    cameras = [parse_camera(c) for c in clips.cameras]
    return make_world(
        out,
        n=clips.clips,
        seed=clips.seed,
        sizes=clips.sizes,
        num_frames=clips.frames,
        workers=workers,
        exclude_heldout=True,
        cameras=cameras,
    )


def cache(manifest: Path, config: TrainConfig, frames: int) -> Path:
    """Latents and text tokens of `manifest` into the cache `config` trains on (its cache_dir,
    patch, pixel budget and text encoder, bf16 where its precision resolves to it); finished
    shards are kept."""
    import torch

    from kinema.compression.evaluate import load_vae
    from kinema.data.cache import CacheSettings, build_cache
    from kinema.data.manifest import read_manifest
    from kinema.precision import resolve_bf16
    from kinema.text import load_text_encoder

    device = "cuda" if torch.cuda.is_available() else "cpu"
    settings = CacheSettings(
        pixel_budget=int(config.data.options["pixel_budget"]),
        max_frames=frames,
        patch=tuple(config.model.patch),
        bf16=resolve_bf16(config.parallel.bf16, device),  # the training config's precision
    )
    out = Path(config.data.options["cache_dir"])
    vae = load_vae(config.model.vae).eval().requires_grad_(False).to(device)
    encoder = load_text_encoder(config.model.text_encoder)
    report = build_cache(read_manifest(manifest), vae, encoder, out, settings)
    print(report.summary())
    if report.index is None:
        raise StageUnfinishedError(f"the cache {out} is unfinished; rerun to finish it")
    return out


def train(config: TrainConfig) -> Path:
    from kinema.train.trainer import Trainer

    exported = Trainer(config).run()
    if exported is None:
        raise StageUnfinishedError(f"{config.out_dir} stopped at its time budget; rerun to resume")
    return exported


# seconds kept after the transformer beyond the expert's steps: the exports and the start-up of
# the process that trains the expert
AFTER_TRANSFORMER_S = 180.0


def with_deadline(
    config: TrainConfig, recipe: RecipeConfig, seconds: dict[str, float]
) -> TrainConfig:
    """The transformer's config, ending in time for `recipe.hours` (unchanged without them).

    `seconds`: the wall time each stage has taken so far. Every stage but the transformer's was
    spent before it; of the transformer's own, what its trainer does not count (the start-up of
    each process that ran it, and steps lost after its last checkpoint when one was stopped) is
    taken off its deadline too. The expert's steps are reserved at the transformer's rate."""
    if recipe.hours is None:
        return config
    from kinema.checkpoint_folders import STATE, latest_checkpoint

    spent = sum(v for k, v in seconds.items() if k != "transformer")
    latest = latest_checkpoint(config.out_dir)
    state = json.loads((latest / STATE).read_text()) if latest is not None else {}
    uncounted = max(0.0, seconds.get("transformer", 0.0) - float(state.get("train_seconds", 0.0)))
    deadline = recipe.hours * 3600 - spent - uncounted - AFTER_TRANSFORMER_S
    if deadline <= 0:
        raise ValueError(
            f"--hours {recipe.hours:g}: the stages before the transformer took "
            f"{spent / 3600:.2f} h, which leaves it no time; give more hours"
        )
    reserve = expert_config(recipe).steps if recipe.expert is not None else 0
    return dataclasses.replace(config, deadline_s=deadline, deadline_reserve_steps=reserve)


def stages(recipe: RecipeConfig, seconds: dict[str, float] | None = None) -> list[Stage]:
    """The recipe's stages in order, each a call that resumes or redoes its own work.

    `seconds` (each stage's wall time so far, which the caller keeps up to date) sets the
    transformer's deadline when the recipe has `hours`."""
    import torch

    from kinema.train.export import DEFAULT_BOUNDARY, export_expert, export_run
    from kinema.world.dataset import MANIFEST

    out = recipe.out

    def clips_and_cache(name: str, clips: WorldClips, config: TrainConfig) -> list[Stage]:
        """Render `clips` into OUT/NAME, then cache them where `config` reads its data."""
        folder = out / name
        return [
            Stage(name, lambda: render(clips, folder, recipe.workers)),
            Stage(f"{name}-cache", lambda: cache(folder / MANIFEST, config, clips.frames)),
        ]

    def vae(k: int) -> Stage:
        config = vae_config(recipe, k)
        return Stage(recipe.vae_stages[k].name, lambda: train_vae(config))

    vaes = [vae(k) for k in range(len(recipe.vae_stages))]
    dit, bf16, final = transformer_config(recipe), torch.bfloat16, out / "model"
    spent = seconds if seconds is not None else {}
    transformer = Stage("transformer", lambda: train(with_deadline(dit, recipe, spent)))
    world = [*vaes, *clips_and_cache("world", recipe.world, dit)]
    if recipe.expert is None:
        export = Stage("model", lambda: export_run(dit.out_dir, final, dit_dtype=bf16))
        return [*world, transformer, export]
    expert = expert_config(recipe)
    return [
        *world,
        *clips_and_cache("pans", recipe.pans, expert),  # before the transformer: its deadline
        transformer,  # then leaves only the expert's steps and the exports after it
        Stage("base", lambda: export_run(dit.out_dir, out / "base", dit_dtype=bf16)),
        Stage("expert", lambda: train(expert)),
        Stage(
            "model",
            lambda: export_expert(
                expert.out_dir, out / "base", final, DEFAULT_BOUNDARY, bf16, int8_delta=True
            ),
        ),
    ]


def _steps_apart(items: Sequence[str]) -> tuple[int | None, list[str]]:
    """The last ``steps=N`` among transformer overrides (None if none or not a number), and the
    other items."""
    is_steps = [i.replace(" ", "").startswith("steps=") for i in items]
    rest = [i for i, s in zip(items, is_steps, strict=True) if not s]
    steps = [i.split("=", 1)[1].strip() for i, s in zip(items, is_steps, strict=True) if s]
    return (int(steps[-1]) if steps and steps[-1].isdigit() else None), rest


def _new_steps(recipe: RecipeConfig, had: dict[str, Any]) -> str | None:
    """Why the record `had` may take this recipe's transformer steps and hours (None: it may not).

    A recipe may change only its transformer's step count and its hours, and only while no step
    it trained would have had another rate: its schedule must be warmup-stable-decay
    (`optim.decay_steps`), its latest checkpoint at or before both schedules' start of decay,
    and a deadline must not have begun the decay. The run then goes on exactly as if started
    with the new arguments (the trainer keeps its optimizer, EMA and data)."""
    from kinema.checkpoint_folders import STATE, checkpoint_step, latest_checkpoint

    wanted = recipe.to_dict()
    others = [k for k in wanted.keys() | had.keys() if k not in ("transformer", "hours")]
    if any(had.get(k) != wanted.get(k) for k in others):
        return None
    old, had_rest = _steps_apart(had.get("transformer", []))
    new, rest = _steps_apart(wanted["transformer"])
    old_hours, new_hours = had.get("hours"), wanted.get("hours")
    if had_rest != rest or (old == new and old_hours == new_hours):
        return None
    if old != new and (old is None or new is None):
        return None
    config = transformer_config(recipe)
    decay = config.optim.decay_steps
    latest = latest_checkpoint(config.out_dir)
    done = 0 if latest is None else checkpoint_step(latest)
    fixed = latest is not None and json.loads((latest / STATE).read_text()).get("decay_fixed")
    steps = min(old or config.steps, new or config.steps)
    if decay is None or done > steps - decay or fixed:
        return None
    changes = []
    if old != new:
        changes.append(f"steps go from {old} to {new}")
    if old_hours != new_hours:
        changes.append(f"hours go from {old_hours} to {new_hours}")
    return (
        f"the transformer's {' and '.join(changes)} at step {done}: its warmup-stable-decay "
        f"schedule had not begun to decay ({decay} steps), so it goes on as if started so"
    )


def _claim(recipe: RecipeConfig) -> dict[str, Any]:
    """The folder's record: new, or the one a run with the same arguments left, or with more or
    fewer transformer steps where that changes no step already trained (else an error)."""
    path = recipe.out / RECORD
    wanted = recipe.to_dict()
    if not path.is_file():
        return {"config": wanted, "seconds": {}}
    record = json.loads(path.read_text())
    change = _new_steps(recipe, record.get("config", {}))
    if change is not None:
        print(change, flush=True)
        record["config"] = wanted
    elif record.get("config") != wanted:
        had = record.get("config", {})
        changed = sorted(k for k in wanted.keys() | had.keys() if wanted.get(k) != had.get(k))
        raise ValueError(
            f"{recipe.out} holds a recipe run with other arguments ({', '.join(changed)} differ; "
            f"see {path}); rerun with the same arguments to resume it, or give another --out"
        )
    return record


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """Within: SIGTERM (`kill`'s default) raises SystemExit, so `finally` blocks run, as they do
    on Ctrl-C; a no-op off the main thread, where Python cannot set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_recipe(recipe: RecipeConfig) -> Path:
    """Run every stage in order (each resuming its own work); returns OUT/model."""
    recipe.out.mkdir(parents=True, exist_ok=True)
    record = _claim(recipe)
    path = recipe.out / RECORD
    plan = stages(recipe, record["seconds"])  # checks both training configs before any work
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    result: Any = None
    with _exit_on_sigterm():  # `kill` too lets the stage below record its time
        for k, stage in enumerate(plan, 1):
            print(f"[recipe {k}/{len(plan)}] {stage.name}", flush=True)
            start = time.perf_counter()
            try:
                result = stage.run()
            finally:  # a stage stopped or killed midway still spent its time
                seconds = record["seconds"]
                spent = seconds.get(stage.name, 0.0) + time.perf_counter() - start
                seconds[stage.name] = round(spent, 1)
                atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    total = sum(record["seconds"].values())
    print(f"model: {result} ({total / 60:.1f} min of wall time in all stages, {path})")
    return Path(result)


def _size(text: str) -> tuple[int, int]:
    from kinema.world.dataset import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise ValueError(f"--sizes: {e}") from None


def _parser() -> argparse.ArgumentParser:
    base = RecipeConfig()
    p = argparse.ArgumentParser(
        prog="kinema train recipe",
        description="train the default model end to end (world, cache, transformer, its "
        "high-noise expert, export); rerun with the same arguments to resume",
    )
    p.add_argument("--out", default=base.out_dir, help=f"recipe folder (default {base.out_dir})")
    vae = p.add_mutually_exclusive_group()
    vae.add_argument("--vae", default=base.vae, help=f"VAE folder (default {base.vae})")
    vae.add_argument(
        "--train-vae",
        action="store_true",
        help="train the VAE from random weights first (stages vae-short, vae-long, vae-decoder)",
    )
    p.add_argument("--clips", type=int, default=base.world.clips, help="world clips (9000)")
    p.add_argument(
        "--sizes",
        default=",".join(f"{w}x{h}" for w, h in base.world.sizes),
        help="WIDTHxHEIGHT of the world clips, comma separated (64x64,96x64,64x96)",
    )
    p.add_argument("--frames", type=int, default=base.world.frames, help="frames per clip (33)")
    p.add_argument("--pan-clips", type=int, default=base.pans.clips, help="expert's clips (2000)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="transformer steps (preset: 10750); a rerun may change them until the decay begins",
    )
    p.add_argument(
        "--hours",
        type=float,
        default=None,
        help="end every stage within this much wall time: the transformer takes the steps the "
        "time affords (at most --steps); a rerun may change it until the decay begins",
    )
    p.add_argument("--expert-steps", type=int, default=None, help="expert steps (preset: 300)")
    p.add_argument(
        "--set",
        dest="transformer",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the transformer's config (the world-tiny preset), e.g. optim.lr=1e-3",
    )
    p.add_argument(
        "--expert-set",
        dest="expert",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the expert's config (the world-expert preset)",
    )
    p.add_argument(
        "--vae-steps",
        default=None,
        metavar="SHORT,LONG,DECODER",
        help="with --train-vae: steps of its three stages (3000,400,400)",
    )
    p.add_argument(
        "--vae-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --train-vae: override both VAE stages' config (kinema vae train --set)",
    )
    p.add_argument("--no-expert", action="store_true", help="ship the transformer alone")
    p.add_argument("--workers", type=int, default=None, help="world rendering processes")
    return p


def _vae_stages(args: argparse.Namespace) -> tuple[VAEStage, ...]:
    """SCRATCH_VAE with --vae-steps and --vae-set on it."""
    stages = SCRATCH_VAE
    if args.vae_steps is not None:
        try:
            steps = [int(s) for s in args.vae_steps.split(",")]
        except ValueError:
            steps = []
        if len(steps) != len(stages) or min(steps) < 1:
            raise ValueError(
                f"--vae-steps {args.vae_steps!r}: give {len(stages)} positive step counts, "
                "SHORT,LONG,DECODER, e.g. 3000,400,400"
            )
        stages = tuple(dataclasses.replace(s, steps=n) for s, n in zip(stages, steps, strict=True))
    return tuple(dataclasses.replace(s, overrides=(*s.overrides, *args.vae_set)) for s in stages)


def config_from_args(argv: Sequence[str]) -> RecipeConfig:
    args = _parser().parse_args(argv)
    if not args.train_vae and (args.vae_steps is not None or args.vae_set):
        raise ValueError("--vae-steps and --vae-set configure the VAE's training: add --train-vae")
    base = RecipeConfig()
    sizes = tuple(_size(s) for s in args.sizes.split(",") if s)
    world = dataclasses.replace(base.world, clips=args.clips, sizes=sizes, frames=args.frames)
    pans = dataclasses.replace(base.pans, clips=args.pan_clips)
    transformer = [*([f"steps={args.steps}"] if args.steps is not None else []), *args.transformer]
    expert = [
        *([f"steps={args.expert_steps}"] if args.expert_steps is not None else []),
        *args.expert,
    ]
    if args.no_expert and expert:
        raise ValueError("--expert-steps and --expert-set configure the expert: drop --no-expert")
    return RecipeConfig(
        out_dir=args.out,
        vae=None if args.train_vae else args.vae,
        vae_stages=_vae_stages(args) if args.train_vae else (),
        world=world,
        pans=pans,
        transformer=tuple(transformer),
        expert=None if args.no_expert else tuple(expert),
        hours=args.hours,
        workers=args.workers,
    )


def main(argv: Sequence[str]) -> int:
    """`kinema train recipe ...`"""
    try:
        run_recipe(config_from_args(argv))
    except StageUnfinishedError as e:
        print(f"kinema train recipe: stopped: {e}")
        return 1
    return 0
