"""Model folders: atomic save, hash-checked load, refusals."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch

from kinema.camera_noise import CameraSpeeds
from kinema.cli import main
from kinema.compression.vae import PRESETS, CausalVAE
from kinema.hub import (
    DEFAULT_MODEL_DIR,
    GenerationDefaults,
    ModelIndex,
    ModelIntegrityError,
    load_dit,
    load_model,
    read_index,
    replace_vae,
    save_model,
    verify_model,
)
from kinema.transformer import DiT, get_preset


def parts() -> tuple[CausalVAE, DiT]:
    torch.manual_seed(0)
    return CausalVAE(PRESETS["debug"]), DiT(get_preset("debug"))


def test_round_trip_and_bf16(tmp_path):
    vae, dit = parts()
    folder = save_model(tmp_path / "m", vae, dit, ModelIndex(patch=(1, 2, 2)))
    loaded = load_model(folder)
    for k, v in dit.state_dict().items():
        assert torch.equal(loaded.dit.state_dict()[k], v), k
    assert set(loaded.index.files) == {
        "vae/config.json",
        "vae/model.safetensors",
        "transformer/config.json",
        "transformer/model.safetensors",
    }
    mask = os.umask(0)
    os.umask(mask)
    for rel in loaded.index.files:  # the usual file mode, not the 0600 some writers create
        assert (folder / rel).stat().st_mode & 0o777 == 0o666 & ~mask, rel
    half = load_model(save_model(tmp_path / "h", vae, dit, ModelIndex(), dit_dtype=torch.bfloat16))
    for k, v in dit.state_dict().items():
        assert torch.equal(half.dit.state_dict()[k], v.to(torch.bfloat16).float()), k


def test_loading_skips_random_fills_and_leaves_torch_init_as_it_was(tmp_path, monkeypatch):
    from kinema import loading

    vae, dit = parts()
    expert = DiT(get_preset("debug"))
    index = ModelIndex(patch=(1, 2, 2), high_noise_boundary=0.9)
    folder = save_model(tmp_path / "m", vae, dit, index, high_noise_dit=expert)
    before = {name: getattr(torch.nn.init, name) for name in loading.INIT_FUNCTIONS}
    fills = []
    counting = {name: _counted(f, fills) for name, f in before.items()}
    for name, f in counting.items():
        monkeypatch.setattr(torch.nn.init, name, f)
    loaded = load_model(folder)
    assert fills == []  # the VAE's and the transformers' layers were built without random fills
    for k, v in dit.state_dict().items():
        assert torch.equal(loaded.dit.low.state_dict()[k], v), k
    for k, v in expert.state_dict().items():
        assert torch.equal(loaded.dit.high.state_dict()[k], v), k
    assert {n: getattr(torch.nn.init, n) for n in loading.INIT_FUNCTIONS} == counting
    DiT(get_preset("debug"))
    assert fills  # outside loading, layers fill their weights as before
    with pytest.raises(RuntimeError, match="boom"), loading.weights_to_be_loaded():
        raise RuntimeError("boom")
    assert {n: getattr(torch.nn.init, n) for n in loading.INIT_FUNCTIONS} == counting


def _counted(function, calls: list[int]):
    def wrapped(*args, **kwargs):
        calls.append(1)
        return function(*args, **kwargs)

    return wrapped


def test_changed_file_fails_the_hash_check(tmp_path):
    folder = save_model(tmp_path / "m", *parts(), ModelIndex())
    weights = folder / "transformer" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"transformer/model\.safetensors"):
        load_model(folder)
    load_model(folder, verify=False)  # still loadable when asked not to check


def test_an_unknown_default_solver_fails_when_the_index_is_read():
    index = ModelIndex().to_dict()
    index["defaults"]["solver"] = "rk4"
    with pytest.raises(ValueError, match=r"unknown solver 'rk4'; valid solvers are \['euler'"):
        ModelIndex.from_dict(index)
    index["defaults"]["solver"] = "stochastic"
    assert ModelIndex.from_dict(index).defaults.solver == "stochastic"


def test_camera_noise_and_speeds_round_trip_and_bad_ones_fail_when_read():
    index = ModelIndex(
        defaults=GenerationDefaults(camera_noise=0.85, held_start=0.75),
        camera_speeds=CameraSpeeds(0.2, 1.3),
    )
    back = ModelIndex.from_dict(json.loads(json.dumps(index.to_dict())))
    assert back.defaults.camera_noise == 0.85 and back.camera_speeds == CameraSpeeds(0.2, 1.3)
    assert back.defaults.held_start == 0.75
    older = index.to_dict()  # an index written before these existed: plain noise
    del older["camera_speeds"], older["defaults"]["camera_noise"], older["defaults"]["held_start"]
    assert ModelIndex.from_dict(older).defaults.camera_noise == 0.0
    assert ModelIndex.from_dict(older).defaults.held_start == 1.0  # plain noise before it existed
    bad = index.to_dict()
    bad["camera_speeds"]["zoom"] = -1
    with pytest.raises(ValueError, match="camera speed zoom must be a finite number > 0"):
        ModelIndex.from_dict(bad)
    bad = index.to_dict()
    bad["defaults"]["camera_noise"] = 3
    with pytest.raises(ValueError, match="camera_noise must be a number from 0 to 1"):
        ModelIndex.from_dict(bad)
    bad = index.to_dict()
    bad["defaults"]["held_start"] = 0
    with pytest.raises(ValueError, match="held_start must be a number greater than 0"):
        ModelIndex.from_dict(bad)


def test_missing_index_and_non_finite_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a Kinema model folder"):
        load_model(tmp_path)
    vae, dit = parts()
    with torch.no_grad():
        next(dit.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        save_model(tmp_path / "bad", vae, dit, ModelIndex())
    assert not (tmp_path / "bad").exists() and list(tmp_path.iterdir()) == []


def test_an_index_must_list_every_weight_and_config_file(tmp_path):
    folder = save_model(tmp_path / "m", *parts(), ModelIndex())
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    del index["files"]["transformer/model.safetensors"]  # the weights would load unchecked
    index_path.write_text(json.dumps(index))
    with pytest.raises(ModelIntegrityError, match=r"no hash for transformer/model\.safetensors"):
        load_model(folder)


def test_a_broken_index_names_what_is_wrong(tmp_path):
    folder = save_model(tmp_path / "m", *parts(), ModelIndex())
    index_path = folder / "model_index.json"
    good = json.loads(index_path.read_text())
    index_path.write_text(json.dumps({k: v for k, v in good.items() if k != "patch"}))
    with pytest.raises(ValueError, match="missing key 'patch'"):
        read_index(folder)
    index_path.write_text(json.dumps({**good, "defaults": {"stepz": 3}}))
    with pytest.raises(ValueError, match=r"stepz.*valid defaults: .*num_inference_steps"):
        read_index(folder)


def test_the_shipped_model_fits_its_60_mb_and_passes_its_hashes():
    if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL_DIR}")
    verify_model(DEFAULT_MODEL_DIR)  # every file listed, every hash right
    total = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert total <= 60_000_000, f"{total:,} bytes"


def test_replace_vae_takes_a_decoder_fine_tune_and_refuses_a_new_encoder(tmp_path):
    vae, dit = parts()
    index = ModelIndex(patch=(1, 2, 2), high_noise_boundary=0.9)
    folder = save_model(tmp_path / "m", vae, dit, index, high_noise_dit=DiT(get_preset("debug")))
    (folder / "README.md").write_text("card")
    tuned = CausalVAE(PRESETS["debug"])
    tuned.load_state_dict(vae.state_dict())
    with torch.no_grad():
        for p in tuned.decoder.parameters():
            p.add_(0.01)
    tuned.save_pretrained(tmp_path / "tuned")
    out = replace_vae(folder, tmp_path / "tuned", tmp_path / "out")
    loaded = load_model(out)  # every hash checks
    for k, v in tuned.state_dict().items():
        assert torch.equal(loaded.vae.state_dict()[k], v), k
    for k, v in dit.state_dict().items():
        assert torch.equal(loaded.dit.low.state_dict()[k], v), k
    before, after = read_index(folder), read_index(out)
    assert after.files["vae/model.safetensors"] != before.files["vae/model.safetensors"]
    assert {k: v for k, v in after.files.items() if not k.startswith("vae/")} == {
        k: v for k, v in before.files.items() if not k.startswith("vae/")
    }
    assert (out / "README.md").read_text() == "card"
    cli = ["vae", "replace", "--model", str(folder), "--vae", str(tmp_path / "tuned")]
    assert main([*cli, "--out", str(tmp_path / "cli")]) == 0
    assert read_index(tmp_path / "cli").files == after.files

    with torch.no_grad():
        tuned.encoder.conv_in.conv.weight.add_(0.01)
    tuned.save_pretrained(tmp_path / "retrained")
    with pytest.raises(ValueError, match=r"outside the decoder \(1 tensors, e\.g\. encoder\."):
        replace_vae(folder, tmp_path / "retrained", tmp_path / "bad")
    tuned.load_state_dict(vae.state_dict())
    channels = tuned.config.latent_channels
    tuned.set_latent_stats(torch.zeros(channels), torch.full((channels,), 2.0))
    tuned.save_pretrained(tmp_path / "renormalized")
    with pytest.raises(ValueError, match="latent_s"):
        replace_vae(folder, tmp_path / "renormalized", tmp_path / "bad")
    with pytest.raises(ValueError, match="only a decoder fine-tune"):
        CausalVAE(PRESETS["tiny"]).save_pretrained(tmp_path / "other")
        replace_vae(folder, tmp_path / "other", tmp_path / "bad")
    with pytest.raises(ValueError, match="is the model folder itself"):
        replace_vae(folder, tmp_path / "tuned", folder)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("part", ["vae", "transformer"])
def test_a_bad_checkpoint_folder_names_the_file_at_fault(tmp_path, part):
    folder = save_model(tmp_path / "m", *parts(), ModelIndex()) / part
    load = CausalVAE.from_pretrained if part == "vae" else load_dit
    config, weights = folder / "config.json", folder / "model.safetensors"
    meta = json.loads(config.read_text())

    config.write_text(json.dumps({**meta, "kind": "something.else"}))
    with pytest.raises(ValueError, match=r"invalid (VAE|DiT) config .*expected 'kinema\."):
        load(folder)
    config.write_text(json.dumps({**meta, "config": {**meta["config"], "depth_x": 1}}))
    with pytest.raises(ValueError, match=r"invalid (VAE|DiT) config"):
        load(folder)
    other = dict(meta["config"])
    key = "base_channels" if part == "vae" else "hidden"
    other[key] *= 2
    config.write_text(json.dumps({**meta, "config": other}))
    with pytest.raises(ValueError, match="does not match") as mismatch:
        load(folder)
    assert str(weights) in str(mismatch.value) and str(config) in str(mismatch.value)
    config.write_text(json.dumps(meta))
    load(folder)  # restored: loads
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header")
    with pytest.raises(
        ValueError, match="corrupt or unreadable safetensors file " + re.escape(str(weights))
    ):
        load(folder)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"checkpoint file not found: .*model\.safetensors"):
        load(folder)
