"""Training configuration: typed dataclasses, named presets, YAML files and `--set` overrides.

A run is described by one `TrainConfig`. A YAML file gives any subset of its fields, optionally on
top of a named preset (a top-level ``preset: NAME`` key); ``--set a.b=value`` overrides change
single values after the file. Every key is checked: an unknown key anywhere raises `ConfigError`
naming the key and listing the valid keys at that level, and every value is type-checked against
the field's annotation::

    preset: debug
    steps: 200
    optim: {lr: 3.0e-4}
    model: {preset: tiny, overrides: {depth: 4}}

`stage: vae` trains the video VAE with `kinema.compression.train.VAETrainer`; its VAE-only fields
live in the `vae` section (a `VAETrainConfig`), the shared ones (steps, optimizer, logging) come
from the top level (`vae_train_config`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kinema.atomic import atomic_write_text
from kinema.camera_noise import check_camera_noise
from kinema.compression.train import VAETrainConfig
from kinema.compression.vae import CHECKPOINT_KIND as VAE_KIND
from kinema.compression.vae import VAEConfig
from kinema.held_start import check_held_start
from kinema.loading import CONFIG_NAME, read_checkpoint_config
from kinema.precision import check_bf16
from kinema.sampling import Solver, check_guidance_min_t, check_guidance_scale
from kinema.transformer import PRESETS as DIT_PRESETS
from kinema.transformer import DiTConfig
from kinema.video import check_fps

__all__ = [
    "PRESETS",
    "ConfigError",
    "DataSection",
    "DataSource",
    "ModelConfig",
    "OptimConfig",
    "ParallelConfig",
    "SampleConfig",
    "Stage",
    "Strategy",
    "SyntheticDataConfig",
    "TrainConfig",
    "apply_overrides",
    "check_bounds",
    "config_to_dict",
    "get_preset",
    "load_config",
    "parse_config",
    "save_config",
    "vae_train_config",
]


class ConfigError(ValueError):
    """A config key or value is invalid; the message names the key (dotted path)."""


class Stage(enum.StrEnum):
    DIT = "dit"  # the diffusion transformer (kinema.train.trainer)
    VAE = "vae"  # the video VAE (kinema.compression.train.VAETrainer)


class Strategy(enum.StrEnum):
    NONE = "none"  # one process
    DDP = "ddp"  # replicated weights, gradients all-reduced
    FSDP = "fsdp"  # FSDP2: weights, gradients and optimizer state sharded per DiT block


class DataSource(enum.StrEnum):
    SYNTHETIC = "synthetic"  # random latent clips and text (kinema.train.synthetic): tests, benches
    ONLINE = "online"  # decode and encode manifest videos each step (kinema.data.OnlineData)
    CACHED = "cached"  # precomputed latents and text (kinema.data.CachedData)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    preset: str = "debug"  # DiT preset name (kinema.transformer.PRESETS)
    overrides: dict[str, Any] = field(
        default_factory=dict
    )  # DiTConfig fields replacing the preset's
    patch: tuple[int, int, int] = (1, 2, 2)  # spacetime patch (t, h, w) in latent units
    vae: str | None = None  # VAE folder (CausalVAE.save_pretrained): online data, samples, export
    text_encoder: str = "minilm"  # kinema.text.load_text_encoder spec: "minilm" or a local folder
    text_max_length: int = 64  # tokens per prompt (samples; written into exported models)
    # rectified-flow timestep shift for training and sampling (written into exported models);
    # None: kinema.flow.token_shift of each clip's token count. Larger values train and sample
    # more at high noise, where a clip's layout is decided.
    timestep_shift: float | None = None
    # share of clips whose t is drawn uniformly from [high_noise_min, 1) instead: the shifted
    # logit-normal almost never trains the first sampling steps (P(t >= 0.99) is about 2e-4 at
    # shift 3), where which way a scene moves is decided (docs/training.md, "High-noise share")
    high_noise_fraction: float = 0.0
    high_noise_min: float = 0.97
    # fnmatch patterns of the DiT parameter names to train (e.g. "blocks.*.cross_attn.*"); the
    # rest stay as built or loaded. Empty: train every parameter. A high-noise expert trained
    # this way is stored as its trained tensors alone (`kinema train export --expert-of`).
    trainable: tuple[str, ...] = ()
    # start a new run from these DiT weights: a run folder (EMA of its latest checkpoint), a
    # checkpoint folder or a model folder; parts the preset adds keep their initial values.
    # A run that resumes from its own checkpoint ignores it.
    init_from: str | None = None

    def dit_config(self) -> DiTConfig:
        """The preset with `overrides` applied, type-checked (errors name model.overrides.KEY)."""
        if self.preset not in DIT_PRESETS:
            raise ConfigError(
                f"model.preset: unknown DiT preset {self.preset!r}; valid: {sorted(DIT_PRESETS)}"
            )
        raw = {**config_to_dict(DIT_PRESETS[self.preset]), **self.overrides}
        return parse_dataclass(DiTConfig, raw, "model.overrides")


@dataclass
class SyntheticDataConfig:
    batch_size: int = 4  # clips in one step's global batch (split over ranks)
    latent_frames: tuple[int, ...] = (1, 3)  # latent frames t per clip, one drawn per clip
    latent_sizes: tuple[tuple[int, int], ...] = ((4, 4), (4, 6), (6, 4))  # latent (h, w) choices
    text_length: int = 8  # text tokens per clip
    classes: int = 8  # distinct (text, latent pattern) pairs: the loss can go down
    noise: float = 0.1  # std of per-clip noise added to a class's latent pattern
    caption_dropout: float = 0.1  # probability that a clip's text is dropped (0 text tokens)
    condition_probability: float = 0.25  # probability that a clip gives its first frame clean
    corrupt_probability: float = 0.0  # probability that a clip is "unreadable": replaced, counted


@dataclass
class DataSection:
    source: DataSource = DataSource.SYNTHETIC  # where the clips come from (see DataSource)
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)  # source synthetic
    # fields of kinema.data.DataConfig (manifest, cache_dir, budgets, caption dropout, seed, ...)
    # for the online and cached sources; checked against it when the config is loaded
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 1e-4  # AdamW peak learning rate, reached after the warmup
    warmup_steps: int = 100  # linear warmup from lr / warmup_steps
    min_lr_ratio: float = 0.1  # cosine decay from lr down to lr * min_lr_ratio at the last step
    # None: the decay spans the whole run after the warmup; N: warmup-stable-decay, lr is held
    # until the last N steps (continue a run at full lr; finish any checkpoint with N more steps)
    decay_steps: int | None = None
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # clip the global gradient norm to this (inf: measure only)


@dataclass
class SampleConfig:
    every: int = 0  # render sample videos every this many steps (0: never)
    prompts: tuple[str, ...] = ("a red ball bounces on the floor",)  # fixed prompts to render
    num_frames: int = 17  # frames per sample video
    height: int = 64  # pixels
    width: int = 64  # pixels
    steps: int = 20  # solver steps
    guidance_scale: float = 4.0  # classifier-free guidance (1: none)
    given_guidance_scale: float | None = None  # exported: i2v/extend/connect/loop/edit's default
    # exported: windows given frames guide only at steps from t >= this (0: every step)
    given_guidance_min_t: float = 0.0
    fps: int = 8  # frame rate of the written .mp4
    seed: int = 0  # noise seed: the same noise at every sampling step
    image_first: bool = False  # exported models make t2v's frame 0 as an image first
    solver: str = "euler"  # euler | heun | stochastic (kinema.sampling.Solver); exported too
    # sampling timestep shift, exported too (None: model.timestep_shift, the training one); a run
    # that trains at another shift than it should sample at sets both
    shift: float | None = None
    # share of camera-primed starting noise (kinema.camera_noise) in samples; exported too
    camera_noise: float = 0.0
    # exported: where windows continuing a video start, from it held (kinema.held_start)
    held_start: float = 1.0


@dataclass
class ParallelConfig:
    strategy: Strategy = Strategy.NONE  # none | ddp | fsdp (under torchrun with >1 process)
    # bf16 autocast for the forward pass (fp32 weights and optimizer); "auto": where the device
    # computes bf16 natively (GPUs, CPUs with AVX512-BF16 or AMX), float32 elsewhere
    bf16: bool | str = False
    activation_checkpointing: bool = False  # recompute each DiT block in the backward pass
    compile: bool = False  # torch.compile each DiT block


# VAETrainConfig fields that a TrainConfig sets from its own fields (see vae_train_config)
VAE_SHARED_FIELDS = {
    "out_dir": "out_dir",
    "steps": "steps",
    "seed": "seed",
    "lr": "optim.lr",
    "warmup_steps": "optim.warmup_steps",
    "min_lr_ratio": "optim.min_lr_ratio",
    "decay_steps": "optim.decay_steps",
    "weight_decay": "optim.weight_decay",
    "grad_clip": "optim.grad_clip",
    "log_every": "log_every",
    "checkpoint_every": "checkpoint_every",
    "max_bad_steps": "max_bad_steps",
    "time_budget_s": "time_budget_s",
    "threads": "threads",
    "bf16": "parallel.bf16",
}


@dataclass
class TrainConfig:
    stage: Stage = Stage.DIT  # dit: the diffusion transformer; vae: the video VAE
    model: ModelConfig = field(default_factory=ModelConfig)  # DiT, patch, VAE, text encoder
    data: DataSection = field(default_factory=DataSection)  # training clips
    optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW and its LR schedule
    ema_decay: float = 0.999  # EMA of the weights (warmed up: min(decay, (1+s)/(10+s)))
    steps: int = 1000  # optimizer steps of the whole run
    seed: int = 0  # weights init, data and noise: a run is a pure function of its config
    out_dir: str = "runs/dit"  # checkpoints/, metrics.jsonl, config.yaml, samples/, model/
    checkpoint_every: int = 100  # steps between checkpoints (one is also written at the end)
    keep_checkpoints: int = 3  # keep the newest this many checkpoints
    log_every: int = 10  # steps between metrics.jsonl rows
    tensorboard: bool = True  # also write TensorBoard scalars to OUT/tensorboard if installed
    samples: SampleConfig = field(default_factory=SampleConfig)  # sample videos during training
    parallel: ParallelConfig = field(default_factory=ParallelConfig)  # DDP/FSDP2, bf16, AC, compile
    max_bad_steps: int = 10  # this many non-finite steps in a row stop the run
    time_budget_s: float | None = None  # stop (with a checkpoint) after this much wall time
    # end by this many seconds of training, summed over resumes: the warmup-stable-decay schedule
    # begins its decay when the time left affords no more (kinema.train.deadline); `steps` is
    # then the most it takes. deadline_reserve_steps: steps' worth of time kept for work after
    deadline_s: float | None = None
    deadline_reserve_steps: int = 0
    threads: int | None = None  # torch CPU threads per process (None: torch's default)
    # stage vae: the VAE trainer's own fields (the shared ones come from the fields above)
    vae: VAETrainConfig = field(
        default_factory=VAETrainConfig, metadata={"set_by": VAE_SHARED_FIELDS}
    )


def vae_train_config(config: TrainConfig) -> VAETrainConfig:
    """The `VAETrainConfig` of a `stage: vae` run: its `vae` section plus the shared fields."""
    o = config.optim
    return dataclasses.replace(
        config.vae,
        out_dir=config.out_dir,
        steps=config.steps,
        seed=config.seed,
        lr=o.lr,
        warmup_steps=o.warmup_steps,
        min_lr_ratio=o.min_lr_ratio,
        decay_steps=o.decay_steps,
        weight_decay=o.weight_decay,
        grad_clip=o.grad_clip,
        log_every=config.log_every,
        checkpoint_every=config.checkpoint_every,
        max_bad_steps=config.max_bad_steps,
        time_budget_s=config.time_budget_s,
        threads=config.threads if config.threads is not None else config.vae.threads,
        bf16=config.parallel.bf16,
    )


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

# the world presets' DiT: the 15M-parameter tiny DiT through the tiny-s4 VAE (CPU budget): 1x4x4
# patches of 4x4-compressed latents, so one token covers 4 frames x 16 x 16 pixels
_WORLD_MODEL = ModelConfig(
    preset="tiny",
    overrides={"in_dim": 256},
    patch=(1, 4, 4),
    vae="models/default/vae",
    text_encoder="minilm",
    timestep_shift=3.0,  # 144 large tokens need more high-noise training than 1.0
)

PRESETS: dict[str, TrainConfig] = {
    # tests and smoke runs: the 0.2M-parameter debug DiT on synthetic latents, seconds per run
    "debug": TrainConfig(
        model=ModelConfig(preset="debug"),
        optim=OptimConfig(lr=1e-3, warmup_steps=5),
        ema_decay=0.99,
        steps=40,
        out_dir="runs/dit-debug",
        checkpoint_every=20,
        keep_checkpoints=2,
        log_every=1,
    ),
    # the tiny DiT on cached procedural-world clips: the default model's transformer
    "world-tiny": TrainConfig(
        model=_WORLD_MODEL,
        data=DataSection(
            source=DataSource.CACHED,
            options={
                "cache_dir": "runs/world-cache",
                "pixel_budget": 96 * 64,
                "token_budget": 2048,
                "seed": 0,
            },
        ),
        # warmup-stable-decay: 2e-3 held, then the last 500 steps decay to 2e-4
        optim=OptimConfig(lr=2e-3, warmup_steps=200, weight_decay=0.0, decay_steps=500),
        ema_decay=0.999,
        steps=10750,
        out_dir="runs/dit-world-tiny",
        checkpoint_every=250,
        log_every=10,
        samples=SampleConfig(
            every=1000,
            prompts=(
                "a red ball bounces on the floor",
                "a blue square slides from left to right",
            ),
            num_frames=33,
            height=64,
            width=64,
            # the exported default: 7 with all of frame 0's noise carried suits a from-scratch
            # model best; the shipped model keeps 10 and 0.85 (WorldBench: docs/benchmarks.md)
            guidance_scale=7.0,
            given_guidance_scale=4.0,  # modes joining given frames: smoother seams (same doc)
            # pans and zooms follow the prompt; all of frame 0's noise carried, which keeps a
            # from-scratch model's moving backgrounds trackable (docs/benchmarks.md)
            camera_noise=1.0,
            held_start=0.75,  # continuations keep the scene they continue (same doc)
        ),
        parallel=ParallelConfig(bf16="auto"),
        threads=2,
    ),
    # world-tiny's high-noise expert: that transformer (model.init_from) fine-tuned 300 steps on
    # panning clips (runs/pans-cache) almost only at high noise (shift 30), frame 0 given to most
    "world-expert": TrainConfig(
        # nearly every t above 0.9: the band the expert samples
        model=dataclasses.replace(_WORLD_MODEL, timestep_shift=30.0, init_from="models/default"),
        data=DataSection(
            source=DataSource.CACHED,
            options={
                "cache_dir": "runs/pans-cache",
                "pixel_budget": 64 * 64,
                "token_budget": 2048,
                # the pan is then a question of which way the given frame moves
                "condition_weights": {
                    "none": 0.2,
                    "first_frame": 0.7,
                    "last_clip": 0.0,
                    "first_last": 0.0,
                    "random_frames": 0.0,
                },
                "seed": 0,
            },
        ),
        optim=OptimConfig(lr=1e-3, warmup_steps=50, weight_decay=0.0, decay_steps=100),
        ema_decay=0.99,
        steps=300,
        out_dir="runs/dit-world-expert",
        checkpoint_every=200,
        log_every=10,
        samples=SampleConfig(
            every=0,
            num_frames=33,
            height=64,
            width=64,
            guidance_scale=10.0,
            given_guidance_scale=4.0,
        ),
        parallel=ParallelConfig(bf16="auto"),
        threads=2,
    ),
    # the tiny-s4 video VAE (4x time, 4x4 space, 16 channels) with the existing VAE trainer
    "vae-tiny": TrainConfig(
        stage=Stage.VAE,
        optim=OptimConfig(lr=1e-3, warmup_steps=100, min_lr_ratio=0.1, grad_clip=1.0),
        steps=1000,
        out_dir="runs/vae-s4",
        checkpoint_every=100,
        log_every=10,
        parallel=ParallelConfig(bf16="auto"),
        max_bad_steps=20,
        threads=2,
        vae=VAETrainConfig(preset="tiny-s4"),
    ),
}


def get_preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown training preset {name!r}; valid: {sorted(PRESETS)}")
    return parse_config(config_to_dict(PRESETS[name]))  # a fresh, independent copy


# --------------------------------------------------------------------------------------------
# Dataclass <-> plain dicts, with type checks
# --------------------------------------------------------------------------------------------


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _set_by(f: dataclasses.Field) -> dict[str, str]:
    return dict(f.metadata.get("set_by", {}))


def config_to_dict(obj: Any) -> Any:
    """Plain YAML-able values: dataclasses to dicts (fields set elsewhere left out), enums to
    their values, tuples to lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = config_to_dict(getattr(obj, f.name))
            if isinstance(value, dict) and _set_by(f):
                value = {k: v for k, v in value.items() if k not in _set_by(f)}
            out[f.name] = value
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {
            (k.value if isinstance(k, enum.Enum) else str(k)): config_to_dict(v)
            for k, v in obj.items()
        }
    return obj


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def parse_dataclass(cls: type, raw: Any, where: str = "", set_by: dict | None = None) -> Any:
    """Build dataclass `cls` from a plain dict, checking every key and value."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    set_by = set_by or {}
    valid = sorted(k for k in fields if k not in set_by)
    kwargs = {}
    for key, value in raw.items():
        path = _join(where, str(key))
        if key in set_by:
            raise ConfigError(f"{path} is set by {set_by[key]}; remove it from {where}")
        if key not in fields:
            level = f" in {where}" if where else " at the top level"
            raise ConfigError(f"unknown key {path!r}; valid keys{level}: {', '.join(valid)}")
        kwargs[key] = parse_value(hints[key], value, path, _set_by(fields[key]))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or 'config'}: {e}") from e


def parse_value(tp: Any, value: Any, where: str, set_by: dict | None = None) -> Any:
    """Check `value` against annotation `tp` and convert it (lists to tuples, strings to enums)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return parse_value(option, value, where, set_by)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(" / ".join(errors))
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, where, set_by)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            valid = [m.value for m in tp]
            raise ConfigError(f"{where}: expected one of {valid}, got {_describe(value)}") from None
    if origin is tuple:
        return _parse_tuple(args, value, where)
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
        return [parse_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
        return {
            parse_value(args[0], k, _join(where, str(k))): parse_value(
                args[1], v, _join(where, str(k))
            )
            for k, v in value.items()
        }
    return _parse_scalar(tp, value, where)


def _parse_tuple(args: tuple, value: Any, where: str) -> tuple:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(parse_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
    return tuple(
        parse_value(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
    )


def _parse_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {_describe(value)}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {_describe(value)}")
    raise TypeError(f"{where}: unsupported annotation {tp!r} in a config dataclass")


# --------------------------------------------------------------------------------------------
# Files and overrides
# --------------------------------------------------------------------------------------------


def _merge(cls: type, base: dict, update: dict) -> dict:
    """`update` over `base`: sections (dataclass fields) merge key by key, values replace."""
    hints = typing.get_type_hints(cls)
    out = dict(base)
    for key, value in update.items():
        tp = hints.get(key)
        if (
            tp is not None
            and dataclasses.is_dataclass(tp)
            and isinstance(value, dict)
            and isinstance(out.get(key), dict)
        ):
            out[key] = _merge(tp, out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(raw: dict, items: list[str] | tuple[str, ...]) -> dict:
    """Apply ``a.b.c=value`` overrides (values in YAML syntax) to a plain config dict, in place."""
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. optim.lr=3e-4)")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from e
        parts = key.split(".")
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {item!r}: {'.'.join(parts[: i + 1])} is a value, not a section"
                )
            node = child
        node[parts[-1]] = value
    return raw


def parse_config(raw: dict) -> TrainConfig:
    """A checked `TrainConfig` from a full or partial plain dict (defaults fill the rest)."""
    config = parse_dataclass(TrainConfig, raw)
    validate(config)
    return config


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    preset: str | None = None,
) -> TrainConfig:
    """Read a YAML config (its ``preset:`` key, else `preset`, else the defaults underneath),
    apply ``--set`` overrides, type-check and validate."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {_describe(raw)}")
    preset = raw.pop("preset", preset)
    base = config_to_dict(get_preset(preset) if preset is not None else TrainConfig())
    merged = _merge(TrainConfig, base, raw)
    return parse_config(apply_overrides(merged, overrides))


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML (atomically); `load_config(path)` reads it back."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=None)
    return atomic_write_text(path, text)


# --------------------------------------------------------------------------------------------
# Cross-field checks
# --------------------------------------------------------------------------------------------


def _positive(value: float | int, where: str) -> None:
    if not value > 0:
        raise ConfigError(f"{where} must be positive, got {value!r}")


# (dotted key, what a valid value is, test): bounds of single values, whose types parse_value
# has already checked; a None (an optional value left out) passes
Bound = tuple[str, str, Callable[[Any], bool]]

BOUNDS: tuple[Bound, ...] = (
    ("threads", "an int >= 1 (or null: torch's default)", lambda v: v >= 1),
    ("time_budget_s", "a number >= 0 (0: one step a call; or null: none)", lambda v: v >= 0),
    ("optim.weight_decay", "a finite number >= 0", lambda v: 0 <= v < math.inf),
    ("optim.betas", "two numbers in [0, 1)", lambda v: all(0 <= b < 1 for b in v)),
    ("model.text_max_length", "an int >= 1", lambda v: v >= 1),
    ("data.synthetic.batch_size", "an int >= 1", lambda v: v >= 1),
    ("data.synthetic.caption_dropout", "a number in [0, 1]", lambda v: 0 <= v <= 1),
    ("data.synthetic.condition_probability", "a number in [0, 1]", lambda v: 0 <= v <= 1),
    ("data.synthetic.corrupt_probability", "a number in [0, 1]", lambda v: 0 <= v <= 1),
    ("samples.num_frames", "an int >= 1", lambda v: v >= 1),
    ("samples.steps", "an int >= 1", lambda v: v >= 1),
)


def check_bounds(config: Any, bounds: Iterable[Bound]) -> None:
    """ConfigError naming the key of the first value outside its bounds (see BOUNDS)."""
    for key, valid, ok in bounds:
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if value is not None and not _passes(ok, value):
            raise ConfigError(f"{key} must be {valid}, got {value!r}")


def _passes(ok: Callable[[Any], bool], value: Any) -> bool:
    """``ok(value)``, False for a value of a type it cannot compare (set without parse_value)."""
    try:
        return bool(ok(value))
    except TypeError:
        return False


def _vae_space_compression(vae: str | None) -> int | None:
    """The space compression of the VAE folder model.vae names (from its config.json); None
    where there is none (yet)."""
    path = None if vae is None else Path(vae) / CONFIG_NAME
    if path is None or not path.is_file():
        return None
    try:
        return read_checkpoint_config(path, VAE_KIND, "VAE", VAEConfig.from_dict).space_compression
    except ValueError as e:
        raise ConfigError(f"model.vae: {e}") from None


def _check_sample_size(config: TrainConfig) -> None:
    """samples.height and .width: positive multiples of the patch times the space compression of
    the VAE in model.vae (the patch alone while there is none)."""
    sc = _vae_space_compression(config.model.vae)
    for name, p in (("height", config.model.patch[1]), ("width", config.model.patch[2])):
        multiple = (sc or 1) * p
        why = f"patch {p}" if sc is None else f"VAE space compression {sc} x patch {p}"
        value = getattr(config.samples, name)
        if value < 1 or value % multiple:
            raise ConfigError(
                f"samples.{name} must be a positive multiple of {multiple} ({why}), got {value}"
            )


def validate(config: TrainConfig) -> None:
    """Checks that span fields; resolves `data.options` against kinema.data.DataConfig."""
    for name in ("steps", "checkpoint_every", "keep_checkpoints", "log_every", "max_bad_steps"):
        _positive(getattr(config, name), name)
    _positive(config.optim.lr, "optim.lr")
    try:
        check_bf16(config.parallel.bf16, "parallel.bf16")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _positive(config.optim.grad_clip, "optim.grad_clip")
    if not 0.0 <= config.ema_decay < 1.0:
        raise ConfigError(f"ema_decay must be in [0, 1), got {config.ema_decay}")
    if not 0.0 <= config.optim.min_lr_ratio <= 1.0:
        raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {config.optim.min_lr_ratio}")
    if config.optim.decay_steps is not None:
        _positive(config.optim.decay_steps, "optim.decay_steps")
    if config.optim.warmup_steps < 0:
        raise ConfigError(f"optim.warmup_steps must be >= 0, got {config.optim.warmup_steps}")
    if config.deadline_s is not None:
        _positive(config.deadline_s, "deadline_s")
        if config.optim.decay_steps is None:
            raise ConfigError(
                f"deadline_s={config.deadline_s:g} ends the run by beginning its decay in time: "
                "give the warmup-stable-decay schedule's optim.decay_steps"
            )
    if config.deadline_reserve_steps < 0:
        raise ConfigError(
            f"deadline_reserve_steps must be >= 0, got {config.deadline_reserve_steps}"
        )
    try:
        Solver.parse(config.samples.solver)
    except ValueError as err:
        raise ConfigError(f"samples.solver: {err}") from None
    if config.samples.every < 0:
        raise ConfigError(f"samples.every must be >= 0 (0: never), got {config.samples.every}")
    try:
        check_guidance_min_t(config.samples.given_guidance_min_t, "samples.given_guidance_min_t")
        samples = config.samples
        check_guidance_scale(samples.guidance_scale, "samples.guidance_scale")
        if samples.given_guidance_scale is not None:
            check_guidance_scale(samples.given_guidance_scale, "samples.given_guidance_scale")
        check_camera_noise(samples.camera_noise, "samples.camera_noise")
        check_held_start(samples.held_start, "samples.held_start")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if any(p < 1 for p in config.model.patch):
        raise ConfigError(f"model.patch must be positive, got {config.model.patch}")
    check_bounds(config, BOUNDS)
    try:
        check_fps(config.samples.fps)
    except ValueError as err:
        raise ConfigError(f"samples.fps: {err}") from None
    _check_sample_size(config)
    if config.model.timestep_shift is not None:
        _positive(config.model.timestep_shift, "model.timestep_shift")
    if config.samples.shift is not None:
        _positive(config.samples.shift, "samples.shift")
    if not 0.0 <= config.model.high_noise_fraction <= 1.0:
        raise ConfigError(
            f"model.high_noise_fraction must be in [0, 1], got {config.model.high_noise_fraction}"
        )
    if not 0.0 <= config.model.high_noise_min < 1.0:
        raise ConfigError(
            f"model.high_noise_min must be in [0, 1), got {config.model.high_noise_min}"
        )
    if config.stage == Stage.VAE:
        if config.parallel.strategy != Strategy.NONE:
            raise ConfigError("stage vae runs in one process: set parallel.strategy to none")
        return
    config.model.dit_config()
    if config.data.source == DataSource.SYNTHETIC:
        if config.data.options:
            raise ConfigError(
                "data.options configures kinema.data sources; with data.source synthetic, set "
                "data.synthetic instead"
            )
        return
    options = data_config(config)
    needs = {DataSource.ONLINE: "manifest", DataSource.CACHED: "cache_dir"}[config.data.source]
    if getattr(options, needs) is None:
        raise ConfigError(f"data.source {config.data.source.value} needs data.options.{needs}")
    config.data.options = config_to_dict(options)


def data_config(config: TrainConfig) -> Any:
    """`data.options` as a kinema.data.DataConfig (type-checked like every other section)."""
    try:
        from kinema.data import DataConfig
    except ImportError as e:
        raise ConfigError(
            f"data.source {config.data.source.value} needs the kinema.data package ({e}); "
            "use data.source synthetic"
        ) from e
    return parse_dataclass(DataConfig, config.data.options, "data.options")
