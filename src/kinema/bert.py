"""A BERT text encoder in plain PyTorch, for Hugging Face ``BertModel`` folders.

Kinema's default text encoder, all-MiniLM-L6-v2, is a 6-layer BERT. Loading it through
transformers costs about four seconds of imports on a 2-core CPU before the first token is
encoded, more than a whole generation. This module computes the same last hidden states from
the same folder (``config.json``, ``model.safetensors``, ``tokenizer.json``) with PyTorch and
the ``tokenizers`` library alone: post-LayerNorm encoder layers, absolute position embeddings,
token type 0, exact GELU, padding keys masked out (as ``BertModel(...).last_hidden_state``; the
tests compare the two). :class:`kinema.text.HFTextEncoder` uses it for ``model_type`` "bert".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import Tensor, nn

__all__ = ["Bert", "BertConfig", "BertTokenizer", "UnsupportedBertError", "load_bert"]

# weights of a BertModel checkpoint that the last hidden states do not use
_UNUSED = ("pooler.", "embeddings.position_ids")


class UnsupportedBertError(ValueError):
    """A BERT config this module does not compute (kinema.text then loads it through
    transformers)."""


@dataclass(frozen=True)
class BertConfig:
    """The fields of a BertModel ``config.json`` that decide its hidden states."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float

    @classmethod
    def from_file(cls, path: str | Path) -> BertConfig:
        """The config of ``path`` (a config.json); an UnsupportedBertError names a setting this
        encoder does not compute (another activation or position embedding), a ValueError what
        is missing or inconsistent."""
        d = json.loads(Path(path).read_text())
        if d.get("model_type") != "bert":
            raise ValueError(f"{path}: model_type is {d.get('model_type')!r}, expected 'bert'")
        unsupported = {
            "hidden_act": (d.get("hidden_act", "gelu"), "gelu"),
            "position_embedding_type": (d.get("position_embedding_type", "absolute"), "absolute"),
        }
        for key, (value, supported) in unsupported.items():
            if value != supported:
                raise UnsupportedBertError(
                    f"{path}: {key} {value!r} is not supported (only {supported!r})"
                )
        fields = [k for k in cls.__dataclass_fields__ if k != "layer_norm_eps"]
        missing = [k for k in fields if k not in d]
        if missing:
            raise ValueError(f"{path}: config.json lacks {missing}")
        config = cls(
            **{k: int(d[k]) for k in fields}, layer_norm_eps=float(d.get("layer_norm_eps", 1e-12))
        )
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"{path}: hidden_size {config.hidden_size} does not divide into "
                f"{config.num_attention_heads} heads"
            )
        return config


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)[None]
        return self.LayerNorm(x + self.token_type_embeddings.weight[0])  # every token: type 0


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        B, L, D = x.shape

        def split(t: Tensor) -> Tensor:  # (B, L, D) -> (B, heads, L, D / heads)
            return t.view(B, L, self.heads, D // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        return out.transpose(1, 2).reshape(B, L, D)


class _Residual(nn.Module):
    """``LayerNorm(dense(x) + skip)``: BERT's output of attention and of the feed-forward."""

    def __init__(self, in_dim: int, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + skip)


class _Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _Residual(c.hidden_size, c)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        return self.output(self.self(x, keep), x)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, BERT's "gelu"


class _Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _Residual(c.intermediate_size, c)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        x = self.attention(x, keep)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class Bert(nn.Module):
    """BERT's encoder; module names follow BertModel's, so its checkpoints load as they are."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Last hidden states (B, L, hidden) of token ids (B, L); ``attention_mask`` (B, L) is 1
        on tokens and 0 on padding, which no token attends to."""
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"{input_ids.shape[1]} tokens exceed this BERT's "
                f"{self.config.max_position_embeddings} positions"
            )
        keep = attention_mask.bool()
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, keep)
        return x


class BertTokenizer:
    """A ``tokenizer.json`` (WordPiece with BERT's [CLS] ... [SEP] template) that pads batches to
    their longest prompt, on the right, and truncates to a maximum length."""

    def __init__(self, path: str | Path) -> None:
        self.tokenizer = Tokenizer.from_file(str(path))
        pad = self.tokenizer.token_to_id("[PAD]")
        if pad is None:
            raise ValueError(f"{path}: the tokenizer has no [PAD] token, so batches can't pad")
        self.pad_id = pad

    def __call__(self, prompts: list[str], max_length: int) -> tuple[Tensor, Tensor]:
        """Token ids and attention mask, both (B, L) int64."""
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.enable_padding(direction="right", pad_id=self.pad_id, pad_token="[PAD]")
        encodings = self.tokenizer.encode_batch(prompts)
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
        return ids, mask


def load_bert(
    path: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> tuple[BertTokenizer, Bert]:
    """The tokenizer and encoder of a BertModel folder, in eval mode without gradients. Every
    weight the encoder has must be in ``model.safetensors`` (a missing one would stay random)."""
    path = Path(path)
    config = BertConfig.from_file(path / "config.json")
    weights = load_file(path / "model.safetensors")
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    weights = {k: v for k, v in weights.items() if not k.startswith(_UNUSED)}
    model = Bert(config)  # on the CPU: built on the meta device, it would import torch._dynamo
    missing, unexpected = model.load_state_dict(weights, strict=False, assign=True)
    if missing:
        raise ValueError(
            f"{path}: checkpoint lacks {len(missing)} weights of BertModel, e.g. {missing[:3]}"
        )
    if unexpected:
        raise ValueError(
            f"{path}: checkpoint has {len(unexpected)} weights BertModel does not, e.g. "
            f"{unexpected[:3]}"
        )
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return BertTokenizer(path / "tokenizer.json"), model
