"""`bf16: auto`: bf16 autocast only where the device computes bf16 natively."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kinema import precision
from kinema.precision import check_bf16, native_bf16, resolve_bf16
from kinema.train import load_config
from kinema.train.config import ConfigError


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ({"fpu", "avx2", "fma"}, False),
        ({"avx2", "avx512f", "avx512bw"}, False),  # AVX-512 without its bf16 extension
        ({"avx2", "avx512f", "avx512_bf16"}, True),
        ({"avx2", "amx_bf16", "amx_tile"}, True),
        (set(), False),  # no /proc/cpuinfo (macOS, Windows): float32
    ],
)
def test_auto_follows_the_cpu_flags(monkeypatch, flags, native):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert native_bf16("cpu") is native
    assert resolve_bf16("auto", torch.device("cpu")) is native
    assert resolve_bf16(True, "cpu") is True and resolve_bf16(False, "cpu") is False


def test_this_machines_flags_are_read():
    flags = precision.cpu_flags()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        assert flags == frozenset()
        return
    assert flags and all(f in text for f in list(flags)[:5])


def test_other_values_are_refused_naming_the_valid_ones():
    for value in (True, False, "auto"):
        assert check_bf16(value) == value
    with pytest.raises(ValueError, match=r"bf16 must be true, false or 'auto', got 'yes'"):
        resolve_bf16("yes", "cpu")
    with pytest.raises(
        ConfigError, match=r"parallel.bf16 must be true, false or 'auto', got 'fast'"
    ):
        load_config(None, ["parallel.bf16=fast"], preset="debug")
    assert load_config(None, ["parallel.bf16=auto"], preset="debug").parallel.bf16 == "auto"
    assert load_config(None, [], preset="world-tiny").parallel.bf16 == "auto"


def test_the_trainer_says_what_auto_chose(tmp_path, monkeypatch, capsys):
    from kinema.train import Trainer

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    argv = [f"out_dir={tmp_path}", "steps=1", "tensorboard=false", "parallel.bf16=auto"]
    trainer = Trainer(load_config(None, argv, preset="debug"))
    assert trainer.bf16 is False
    trainer.run(progress=False)
    assert "float32 (parallel.bf16 auto: bf16 is not native on cpu)" in capsys.readouterr().out


def test_the_vae_trainer_resolves_auto_and_refuses_other_words(tmp_path, monkeypatch):
    from kinema.compression.train import VAETrainConfig, VAETrainer, apply_overrides

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    config = VAETrainConfig(preset="debug", out_dir=str(tmp_path), steps=1)
    assert config.bf16 == "auto" and VAETrainer(config).bf16 is True
    assert VAETrainer(apply_overrides(config, ["bf16=false"])).bf16 is False
    with pytest.raises(ValueError, match=r"bf16 must be true, false or 'auto', got 'fast'"):
        VAETrainer(apply_overrides(config, ["bf16=fast"]))
