"""kinema.bert: BERT's last hidden states in plain PyTorch, against transformers' BertModel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from kinema.bert import BertConfig, UnsupportedBertError, load_bert
from kinema.text import HFTextEncoder, minilm_model_dir

transformers = pytest.importorskip("transformers")

PROMPTS = [
    "a red ball bounces on a blue floor",
    "x",
    "the camera pans left while a small green triangle glides up and to the right, painting a "
    "line as it goes, and a large purple circle drops and bounces on an orange floor behind it",
]


def reference(folder, prompts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' tokens and BertModel last hidden states, as kinema.text used them."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    batch = tokenizer(
        prompts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt"
    )
    model = transformers.BertModel.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    return batch["input_ids"], hidden * batch["attention_mask"][..., None]


@pytest.mark.parametrize("max_length", [64, 12])
def test_minilm_hidden_states_match_transformers(max_length):
    folder = minilm_model_dir()
    tokenizer, model = load_bert(folder)
    ids, mask = tokenizer(PROMPTS, max_length)
    if max_length == 12:  # the long prompt is cut to 12 tokens, [SEP] last
        assert ids.shape[1] == 12 and ids[2, -1] == tokenizer.tokenizer.token_to_id("[SEP]")
    else:
        assert 12 < ids.shape[1] < 64
    assert mask[:, 0].all() and not mask[1, 3:].any()  # [CLS] x [SEP], then padding
    ref_ids, ref_hidden = reference(folder, PROMPTS, max_length)
    assert torch.equal(ids, ref_ids)
    hidden = model(ids, mask) * mask[..., None]
    assert torch.allclose(hidden, ref_hidden, atol=2e-5)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_a_random_bert_matches_transformers(tmp_path):
    """Other sizes than MiniLM's: 3 layers, 4 heads, 48-d, a "bert." prefix on the weights."""
    folder = shutil.copytree(minilm_model_dir(), tmp_path / "bert", dirs_exist_ok=True)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=64,
    )
    model = transformers.BertModel(config).eval()
    model.save_pretrained(folder)
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    save_file({f"bert.{k}": v for k, v in weights.items()}, folder / "model.safetensors")
    tokenizer, ours = load_bert(folder)
    ids, mask = tokenizer(PROMPTS, 64)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(ours(ids, mask) * mask[..., None], ref * mask[..., None], atol=2e-5)
    with pytest.raises(ValueError, match="exceed this BERT's 64 positions"):
        ours(torch.zeros(1, 65, dtype=torch.long), torch.ones(1, 65))


def test_config_names_what_it_cannot_compute(tmp_path):
    config = json.loads((minilm_model_dir() / "config.json").read_text())
    path = tmp_path / "config.json"
    for key, value, why in [
        ("hidden_act", "relu", "hidden_act 'relu' is not supported"),
        ("position_embedding_type", "relative_key", "position_embedding_type 'relative_key'"),
        ("model_type", "roberta", "model_type is 'roberta', expected 'bert'"),
        ("num_attention_heads", 5, "hidden_size 384 does not divide into 5 heads"),
    ]:
        path.write_text(json.dumps({**config, key: value}))
        with pytest.raises(ValueError, match=why):
            BertConfig.from_file(path)
    path.write_text(json.dumps({k: v for k, v in config.items() if k != "vocab_size"}))
    with pytest.raises(ValueError, match=r"lacks \['vocab_size'\]"):
        BertConfig.from_file(path)


def test_the_default_encoder_never_imports_transformers():
    code = (
        "import sys; from kinema.text import minilm_encoder; "
        "e = minilm_encoder().encode(['a red ball']); "
        "print(tuple(e.tokens.shape), 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "False", out.stdout


def test_a_variant_it_does_not_compute_goes_through_transformers(tmp_path):
    folder = shutil.copytree(minilm_model_dir(), tmp_path / "relative")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(
        json.dumps({**config, "position_embedding_type": "relative_key"})
    )
    with pytest.raises(UnsupportedBertError):
        load_bert(folder)
    encoder = HFTextEncoder(folder)
    assert not encoder.native and encoder.encode(["a red ball"]).tokens.shape[-1] == 384
    assert HFTextEncoder(minilm_model_dir()).native
