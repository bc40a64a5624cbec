"""The trainer on kinema.data's OnlineData: world clips through a debug VAE, and a corrupt video
whose replacement counts reach metrics.jsonl (through `data.stats`) and survive a resume."""

from __future__ import annotations

import json

import torch

from kinema.compression.vae import PRESETS as VAE_PRESETS
from kinema.compression.vae import CausalVAE
from kinema.text import TextEmbedding
from kinema.train import Trainer, load_config
from kinema.world.dataset import make_world


class RandomTextEncoder:
    """Fixed random token features per prompt (32-d: the debug DiT's text_dim)."""

    dim = 32

    def encode(self, prompts: list[str]) -> TextEmbedding:
        g = torch.Generator().manual_seed(sum(map(ord, prompts[0])))
        return TextEmbedding(torch.randn(1, 4, 32, generator=g), torch.ones(1, 4, dtype=torch.bool))


def test_online_data_trains_and_counts_corrupt_videos(tmp_path):
    manifest = make_world(
        tmp_path / "world", n=4, seed=0, sizes=[(16, 16)], num_frames=9, workers=1, progress=False
    )
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    (manifest.parent / records[0]["path"]).write_bytes(b"not a video")  # unreadable from now on
    torch.manual_seed(0)
    vae_dir = CausalVAE(VAE_PRESETS["debug"]).save_pretrained(tmp_path / "vae")
    overrides = [
        f"out_dir={tmp_path / 'run'}",
        f"model.vae={vae_dir}",
        "data.source=online",
        f"data.options={{manifest: {manifest}, pixel_budget: 256, max_frames: 9, "
        "token_budget: 48, seed: 3}",
        "steps=4",
        "checkpoint_every=2",
        "threads=1",
        "tensorboard=false",
    ]
    config = load_config(None, overrides, preset="debug")
    Trainer(config, text_encoder=RandomTextEncoder()).run(progress=False)
    straight = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert all(r["loss"] is not None and r["tokens"] > 0 for r in straight)
    assert straight[-1]["data"]["skipped"] > 0 and straight[-1]["data"]["corrupt_files"] == 1
    assert (tmp_path / "run" / "model" / "model_index.json").is_file()

    # stopped after step 2 (steps=2: the warmup makes its LRs those of the 4-step run), then
    # resumed to step 4: the same losses, tokens and data counts
    resumed_dir = tmp_path / "resumed"
    overrides[0] = f"out_dir={resumed_dir}"
    stopped = load_config(None, [*overrides, "steps=2"], preset="debug")
    Trainer(stopped, text_encoder=RandomTextEncoder()).run(progress=False)
    config = load_config(None, overrides, preset="debug")
    Trainer(config, text_encoder=RandomTextEncoder()).run(progress=False)
    resumed = [json.loads(line) for line in (resumed_dir / "metrics.jsonl").open()]
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert resumed[-1]["data"]["skipped"] == straight[-1]["data"]["skipped"]
    assert [r["tokens"] for r in resumed] == [r["tokens"] for r in straight]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
