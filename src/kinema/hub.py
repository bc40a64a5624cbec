"""Model folders: a VAE, a DiT and what a pipeline needs to run them, with integrity checks.

A Kinema model folder (``models/default`` is the shipped one)::

    model_index.json        format, version, patch size, text encoder, generation defaults,
                            limits, camera speeds (kinema.camera_noise), and the SHA-256 of
                            every weights file
    vae/config.json         CausalVAE.save_pretrained
    vae/model.safetensors
    transformer/config.json
    transformer/model.safetensors
    transformer_high/model.safetensors
                            optional: a high-noise expert (kinema.transformer.experts) for the
                            sampling steps from t >= ``high_noise_boundary``, stored as the
                            tensors that differ from transformer/'s (the rest are shared), each
                            whole or as NAME.delta_int8 + NAME.delta_scale (int8 differences
                            from transformer/'s matrix, one float32 scale per row)
    README.md               the model card (optional)

`replace_vae` copies a model folder with another VAE that shares its encoder: a decoder fine-tune
(``freeze_encoder``) leaves the transformer's latents as they were, so it can swap in alone.

`save_model` writes the whole folder into a temporary directory and renames it into place, so a
half-written model folder never exists; it refuses non-finite weights, and replaces only a model
folder (one with ``model_index.json``, as a re-export does) or an empty one, never a file or a
folder of anything else. `load_model` checks every hash in ``model_index.json`` before it reads
a tensor (safetensors only).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from kinema.atomic import atomic_directory
from kinema.camera_noise import CameraSpeeds, check_camera_noise
from kinema.compression.vae import CausalVAE
from kinema.held_start import check_held_start
from kinema.loading import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    build_loaded,
    checkpoint_paths,
    read_checkpoint_config,
    read_tensors,
    weights_to_be_loaded,
)
from kinema.modes import mode_guidance
from kinema.sampling import Solver, check_guidance_min_t, check_guidance_scale, check_shift
from kinema.text import sha256_file
from kinema.transformer import DiT, DiTConfig
from kinema.transformer.experts import TimestepExperts, share_parameters
from kinema.transformer.layers import AttentionBackend

__all__ = [
    "DEFAULT_MODEL_DIR",
    "INDEX_NAME",
    "GenerationDefaults",
    "LoadedModel",
    "ModelIndex",
    "ModelIntegrityError",
    "ModelLimits",
    "load_dit",
    "load_expert",
    "load_model",
    "replace_vae",
    "save_dit",
    "save_model",
    "verify_model",
]

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "default"
INDEX_NAME = "model_index.json"
FORMAT = "kinema.pipeline"
FORMAT_VERSION = 1
DIT_KIND = "kinema.DiT"
EXPERT_FOLDER = "transformer_high"
DELTA, SCALE = ".delta_int8", ".delta_scale"  # an int8 row delta's two tensors in an expert file
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelIntegrityError(ValueError):
    """A model folder's files do not match the hashes in its model_index.json."""


@dataclass(frozen=True)
class GenerationDefaults:
    """What `kinema generate PROMPT` makes when nothing else is asked for."""

    width: int = 64
    height: int = 64
    num_frames: int = 33
    fps: int = 8
    num_inference_steps: int = 20
    guidance_scale: float = 4.0
    # guidance of the modes joining given frames (kinema.modes.mode_guidance); None: the above
    given_guidance_scale: float | None = None
    # those windows guide only at steps from t >= this (the noisy ones); 0: at every step
    given_guidance_min_t: float = 0.0
    shift: float | None = None  # sampling timestep shift; None: the token-count shift of training
    negative_prompt: str = ""
    image_first: bool = False  # t2v makes frame 0 as an image first (kinema.modes.ModeInputs)
    solver: str = "euler"  # a kinema.sampling.Solver value: euler, heun or stochastic
    # share of the starting noise moved as the prompt's camera moves (kinema.camera_noise)
    camera_noise: float = 0.0
    # where windows continuing a video start sampling, from it held over the new frames
    # (kinema.held_start); 1: from plain noise
    held_start: float = 1.0

    def __post_init__(self) -> None:
        Solver.parse(self.solver)  # a bad name fails where the model index is read
        check_camera_noise(self.camera_noise)
        check_held_start(self.held_start)
        check_guidance_min_t(self.given_guidance_min_t, "given_guidance_min_t")
        check_guidance_scale(self.guidance_scale, "guidance_scale")
        if self.given_guidance_scale is not None:
            check_guidance_scale(self.given_guidance_scale, "given_guidance_scale")
        check_shift(self.shift)

    def guidance_for(self, mode: str) -> float:
        """The default guidance scale of a mode (a Mode or its value, e.g. "i2v")."""
        return mode_guidance(mode, self.guidance_scale, self.given_guidance_scale)


@dataclass(frozen=True)
class ModelLimits:
    """Sizes the model accepts (pixels); width and height must also be multiples of the VAE's
    spatial compression times the patch size."""

    min_size: int = 32
    max_size: int = 256
    max_frames: int = 129  # per generated window (`long` mode chains windows)


@dataclass(frozen=True)
class ModelIndex:
    patch: tuple[int, int, int] = (1, 2, 2)  # DiT patch (t, h, w) in latent units
    text_encoder: str = "minilm"  # a spec `kinema.text.load_text_encoder` accepts
    text_max_length: int = 64
    defaults: GenerationDefaults = field(default_factory=GenerationDefaults)
    limits: ModelLimits = field(default_factory=ModelLimits)
    files: dict[str, str] = field(default_factory=dict)  # relative path -> SHA-256 (on save)
    # sampling steps from t >= this use the high-noise expert in transformer_high/; None: no expert
    high_noise_boundary: float | None = None
    # how fast the camera of the clips it learnt from moves, for kinema.camera_noise
    camera_speeds: CameraSpeeds = field(default_factory=CameraSpeeds)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form: training run, figures

    def __post_init__(self) -> None:
        b = self.high_noise_boundary  # checked here, so a bad one is never written either
        if b is not None and (
            isinstance(b, bool) or not isinstance(b, int | float) or not 0 < b <= 1
        ):
            raise ValueError(
                f"high_noise_boundary (--boundary) must be a number in (0, 1] or null, got {b!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["patch"] = list(self.patch)
        return {"format": FORMAT, "version": FORMAT_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelIndex:
        if d.get("format") != FORMAT:
            raise ValueError(f"format is {d.get('format')!r}, expected {FORMAT!r}")
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"version is {d.get('version')!r}, this Kinema reads {FORMAT_VERSION}")
        return cls(
            patch=tuple(int(p) for p in d["patch"]),
            text_encoder=str(d["text_encoder"]),
            text_max_length=int(d.get("text_max_length", 64)),
            defaults=GenerationDefaults(**d.get("defaults", {})),
            limits=ModelLimits(**d.get("limits", {})),
            files=dict(d.get("files", {})),
            high_noise_boundary=d.get("high_noise_boundary"),
            camera_speeds=CameraSpeeds(**d.get("camera_speeds", {})),
            extra=dict(d.get("extra", {})),
        )


@dataclass
class LoadedModel:
    vae: CausalVAE
    dit: DiT | TimestepExperts  # the pair when the folder has a high-noise expert
    index: ModelIndex
    directory: Path


def _finite_tensors(module: torch.nn.Module, dtype: torch.dtype | None, what: str) -> dict:
    tensors = {}
    for k, v in module.state_dict().items():
        v = v.detach().cpu()
        if v.is_floating_point():
            if not v.isfinite().all():
                raise ValueError(f"refusing to save {what}: non-finite values in {k!r}")
            if dtype is not None:
                v = v.to(dtype)
        tensors[k] = v.contiguous()
    return tensors


def _dit_config_dict(config: DiTConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["attention_backend"] = AttentionBackend(config.attention_backend).value
    if d["rope_axes_dims"] is not None:
        d["rope_axes_dims"] = list(d["rope_axes_dims"])
    return d


def save_dit(dit: DiT, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` for a DiT into ``directory`` (not atomic on
    its own: `save_model` writes whole folders atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = _finite_tensors(dit, dtype, str(directory))
    meta = {"kind": DIT_KIND, "version": 1, "config": _dit_config_dict(dit.config)}
    (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    return directory


def load_dit(directory: str | Path, device: torch.device | str = "cpu") -> DiT:
    """Load a DiT written by `save_dit` (weights are cast to float32)."""
    config_path, weights_path = checkpoint_paths(directory, "DiT")
    config = read_checkpoint_config(config_path, DIT_KIND, "DiT", _dit_config)
    tensors = {k: v.float() for k, v in read_tensors(weights_path, device).items()}
    return build_loaded(lambda: DiT(config).to(device), tensors, weights_path, config_path)


def _dit_config(d: dict[str, Any]) -> DiTConfig:
    cfg = dict(d)
    if cfg.get("rope_axes_dims") is not None:
        cfg["rope_axes_dims"] = tuple(cfg["rope_axes_dims"])
    return DiTConfig(**cfg)


def save_model(
    directory: str | Path,
    vae: CausalVAE,
    dit: DiT,
    index: ModelIndex,
    dit_dtype: torch.dtype | None = None,
    model_card: str | None = None,
    high_noise_dit: DiT | None = None,
    int8_delta: bool = False,
) -> Path:
    """Write a whole model folder atomically; returns its path. An existing `directory` must be
    a model folder (it is replaced) or empty: ValueError for a file or other contents, before
    anything is written. ``dit_dtype=torch.bfloat16`` halves the transformer's size on disk (it
    is loaded back as float32). `high_noise_dit`, with ``index.high_noise_boundary`` set, is
    stored as a high-noise expert: the tensors in which it differs from `dit` (at
    ``dit_dtype``); with `int8_delta` its matrices as int8 differences from `dit`'s, one float32
    scale per row (a quarter of float32's bytes, half of bfloat16's)."""
    if (high_noise_dit is None) != (index.high_noise_boundary is None):
        raise ValueError(
            "a high-noise expert needs index.high_noise_boundary and the boundary needs the "
            f"expert; got boundary {index.high_noise_boundary} and "
            f"{'no expert' if high_noise_dit is None else 'an expert'}"
        )
    with atomic_directory(directory, markers=(INDEX_NAME,)) as tmp:
        vae.save_pretrained(tmp / "vae")
        save_dit(dit, tmp / "transformer", dtype=dit_dtype)
        files = {}
        for sub in ("vae", "transformer"):
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                files[f"{sub}/{name}"] = sha256_file(tmp / sub / name)
        if high_noise_dit is not None:
            path = _save_expert(high_noise_dit, dit, tmp / EXPERT_FOLDER, dit_dtype, int8_delta)
            files[f"{EXPERT_FOLDER}/{WEIGHTS_NAME}"] = sha256_file(path)
        index = dataclasses.replace(index, files=files)
        (tmp / INDEX_NAME).write_text(json.dumps(index.to_dict(), indent=2) + "\n")
        if model_card is not None:
            (tmp / "README.md").write_text(model_card)
    return Path(directory)


def replace_vae(directory: str | Path, vae_directory: str | Path, out: str | Path) -> Path:
    """Write model folder `directory` to `out` with the VAE of `vae_directory` in place of its
    own, every hash in the index recomputed. The new VAE must keep the model's encoder and
    latent normalization bit for bit, as a decoder-only fine-tune (``freeze_encoder``) does: the
    transformer was trained on those latents. Only the decoder may differ. An existing `out`
    must be a model folder or empty, as for `save_model`."""
    directory, vae_directory, out = Path(directory), Path(vae_directory), Path(out)
    if out.resolve() == directory.resolve():
        raise ValueError(f"--out {out} is the model folder itself; write the copy elsewhere")
    index = read_index(directory)
    verify_model(directory, index)
    old = CausalVAE.from_pretrained(directory / "vae")
    new = CausalVAE.from_pretrained(vae_directory)
    if new.config != old.config:
        raise ValueError(
            f"the VAE in {vae_directory} has config {new.config.to_dict()}, the model's "
            f"{old.config.to_dict()}: only a decoder fine-tune of the model's VAE can replace it"
        )
    old_state, new_state = old.state_dict(), new.state_dict()
    differ = [
        name
        for name, tensor in old_state.items()
        if not name.startswith("decoder.") and not torch.equal(tensor, new_state[name])
    ]
    if differ:
        raise ValueError(
            f"the VAE in {vae_directory} differs from {directory / 'vae'} outside the decoder "
            f"({len(differ)} tensors, e.g. {', '.join(differ[:3])}): the transformer was trained "
            "on the model's latents, so only a decoder fine-tune (freeze_encoder=true, "
            "init_from the model's VAE) can replace it"
        )
    with atomic_directory(out, markers=(INDEX_NAME,)) as tmp:
        shutil.copytree(directory, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("vae"))
        new.save_pretrained(tmp / "vae")
        files = dict(index.files)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            files[f"vae/{name}"] = sha256_file(tmp / "vae" / name)
        index = dataclasses.replace(index, files=files)
        (tmp / INDEX_NAME).write_text(json.dumps(index.to_dict(), indent=2) + "\n")
    return out


def _save_expert(
    expert: DiT, base: DiT, directory: Path, dtype: torch.dtype | None, int8_delta: bool
) -> Path:
    """Write the tensors in which `expert` differs from `base` (both at `dtype`): whole, or with
    `int8_delta` each matrix as its difference from `base`'s in int8, one scale per row."""
    if expert.config != base.config:
        raise ValueError(
            f"the high-noise expert's DiT config {expert.config} differs from the model's "
            f"{base.config}: an expert is a fine-tune of the model it joins"
        )
    base_tensors = _finite_tensors(base, dtype, "the transformer")
    exact = _finite_tensors(expert, None, "the high-noise expert")
    own = {}
    for name, tensor in exact.items():
        stored = tensor if dtype is None else tensor.to(dtype)
        if torch.equal(stored, base_tensors[name]):
            continue
        if int8_delta and tensor.ndim == 2 and tensor.is_floating_point():
            delta = tensor.float() - base_tensors[name].float()  # from the base as it loads
            scale = delta.abs().amax(dim=1, keepdim=True) / 127  # (rows, 1)
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            own[name + DELTA] = (delta / scale).round().clamp(-127, 127).to(torch.int8)
            own[name + SCALE] = scale
        else:
            own[name] = stored
    if not own:
        raise ValueError("the high-noise expert equals the model it joins: nothing to store")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WEIGHTS_NAME
    save_file(own, str(path), metadata={"format": "pt", "shares": "transformer"})
    return path


def load_expert(directory: str | Path, base: DiT) -> DiT:
    """The high-noise expert of a model folder: `base` with the expert's own tensors in place of
    its own (an int8 row delta added to `base`'s), every other parameter shared with `base`."""
    path = Path(directory) / EXPERT_FOLDER / WEIGHTS_NAME
    stored = read_tensors(path, next(base.parameters()).device)
    state = base.state_dict()
    own = {}
    for key, tensor in stored.items():
        if key.endswith(SCALE):
            continue
        if tensor.is_floating_point() and not tensor.isfinite().all():
            raise ValueError(f"{path}: non-finite values in {key!r}")
        name = key.removesuffix(DELTA)
        if name not in state or state[name].shape != tensor.shape:
            want = tuple(state[name].shape) if name in state else "no such tensor"
            raise ValueError(
                f"{path}: tensor {key!r} {tuple(tensor.shape)} does not fit the transformer "
                f"({want}): the expert belongs to another model"
            )
        if key == name:
            own[name] = tensor.float()
            continue
        scale = stored.get(name + SCALE)
        if scale is None or scale.shape != (tensor.shape[0], 1) or not scale.isfinite().all():
            raise ValueError(f"{path}: {key!r} needs a finite {name + SCALE!r} of one per row")
        own[name] = state[name] + tensor.float() * scale.float()
    with weights_to_be_loaded():
        expert = DiT(base.config).to(next(base.parameters()).device)
    share_parameters(expert, base, own=set(own))
    expert.load_state_dict({**state, **own}, strict=True)
    return expert.eval()


def read_index(directory: str | Path) -> ModelIndex:
    path = Path(directory) / INDEX_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} is not a Kinema model folder: {INDEX_NAME} not found "
            f"(a model folder is written by kinema.hub.save_model or `kinema train` export)"
        )
    try:
        return ModelIndex.from_dict(json.loads(path.read_text()))
    except KeyError as e:
        raise ValueError(f"invalid {path}: missing key {e}") from e
    except TypeError as e:  # an unknown key in "defaults" or "limits"
        raise ValueError(
            f"invalid {path}: {e}; valid defaults: {_field_names(GenerationDefaults)}, "
            f"valid limits: {_field_names(ModelLimits)}"
        ) from e
    except (json.JSONDecodeError, ValueError) as e:
        raise ValueError(f"invalid {path}: {e}") from e


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def verify_model(directory: str | Path, index: ModelIndex | None = None) -> None:
    """Raise ModelIntegrityError unless every file listed in the index has its SHA-256."""
    directory = Path(directory)
    index = index or read_index(directory)
    if not index.files:
        raise ModelIntegrityError(f"{directory / INDEX_NAME} lists no file hashes")
    required = [
        f"{sub}/{name}" for sub in ("vae", "transformer") for name in (CONFIG_NAME, WEIGHTS_NAME)
    ]
    if index.high_noise_boundary is not None:
        required.append(f"{EXPERT_FOLDER}/{WEIGHTS_NAME}")
    unlisted = [rel for rel in required if rel not in index.files]
    if unlisted:
        raise ModelIntegrityError(
            f"{directory / INDEX_NAME} has no hash for {', '.join(unlisted)}: every weight and "
            f"config file of a model must be listed; re-export the model (kinema.hub.save_model)"
        )
    for rel, expected in index.files.items():
        path = directory / rel
        if not path.is_file():
            raise ModelIntegrityError(f"{path} is missing (listed in {INDEX_NAME})")
        actual = sha256_file(path)
        if actual != expected:
            raise ModelIntegrityError(
                f"{path} has SHA-256 {actual}, but {INDEX_NAME} says {expected}: the file is "
                f"corrupt or was changed; restore it (git checkout) or re-export the model"
            )


def load_model(
    directory: str | Path | None = None, device: torch.device | str = "cpu", verify: bool = True
) -> LoadedModel:
    """Load a model folder (default: the shipped ``models/default``), hash-checked."""
    if directory is None:
        directory = DEFAULT_MODEL_DIR
        if not (directory / INDEX_NAME).is_file():
            raise FileNotFoundError(
                f"no model given and the shipped default model is not at {directory}; "
                f"pass a model folder (--model DIR)"
            )
    directory = Path(directory)
    index = read_index(directory)
    if verify:
        verify_model(directory, index)
    vae = CausalVAE.from_pretrained(directory / "vae", device=device)
    dit = load_dit(directory / "transformer", device=device)
    if index.high_noise_boundary is not None:
        dit = TimestepExperts(dit, load_expert(directory, dit), index.high_noise_boundary)
    return LoadedModel(vae=vae, dit=dit, index=index, directory=directory)
