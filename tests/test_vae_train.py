"""VAE training: losses against closed forms, atomic checkpoints, exact resume, the NaN guard."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from kinema.compression.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from kinema.compression.data import MixedClipDataset, WorldSource
from kinema.compression.losses import (
    chroma,
    frame_differences,
    kl_divergence,
    psnr,
    reconstruction_loss,
    ssim,
)
from kinema.compression.train import VAETrainConfig, VAETrainer, apply_overrides, learning_rate
from kinema.compression.vae import PRESETS, CausalVAE


def tiny_config(tmp_path, **changes) -> VAETrainConfig:
    base = VAETrainConfig(
        preset="debug",
        out_dir=str(tmp_path / "run"),
        steps=4,
        clips_per_step=2,
        warmup_steps=2,
        sizes=((32, 32), (32, 48)),
        lengths=(1, 5),
        source_weights={"world": 1.0},
        log_every=1,
        checkpoint_every=2,
        bf16=False,
    )
    return apply_overrides(base, [f"{k}={json.dumps(v)}" for k, v in changes.items()])


def world_data(config: VAETrainConfig) -> MixedClipDataset:
    return MixedClipDataset(
        sources=[WorldSource()],
        weights={"world": 1.0},
        sizes=config.sizes,
        lengths=config.lengths,
        seed=config.seed,
    )


def losses(run_dir) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def test_metrics_match_closed_forms():
    x = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert psnr(x, x + 0.02).item() == pytest.approx(40.0, abs=0.01)
    mean, logvar = torch.zeros(4), torch.zeros(4)
    assert kl_divergence(mean, logvar).item() == 0.0
    assert kl_divergence(torch.ones(4), logvar).item() == pytest.approx(0.5)


def test_chroma_term_penalizes_lost_colour_only():
    gray = torch.zeros(1, 3, 2, 8, 8)
    red = torch.zeros(1, 3, 2, 8, 8)
    red[:, 0], red[:, 1], red[:, 2] = 1.0, -1.0, -1.0
    assert chroma(gray).abs().max() == 0  # grey has no chroma
    luma_only = gray + 0.5  # a brighter grey: no chroma error
    base, _ = reconstruction_loss(luma_only, gray, ssim_weight=0.0)
    with_chroma, parts = reconstruction_loss(luma_only, gray, ssim_weight=0.0, chroma_weight=3.0)
    assert torch.allclose(base, with_chroma) and parts["chroma_mse"] == 0.0
    _, parts = reconstruction_loss(gray, red, ssim_weight=0.0, chroma_weight=1.0)
    cb, cr = -0.168736 + 0.331264 - 0.5, 0.5 + 0.418688 + 0.081312  # chroma of (1, -1, -1)
    assert parts["chroma_mse"] == pytest.approx((cb**2 + cr**2) / 2, rel=1e-5)


def test_temporal_term_penalizes_flicker_not_steady_error():
    target = torch.zeros(1, 3, 4, 8, 8)
    steady = target + 0.25  # the same error in every frame: no change from frame to frame
    flicker = target + 0.25 * torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 1, 4, 1, 1)
    base, _ = reconstruction_loss(steady, target, ssim_weight=0.0)
    with_temporal, parts = reconstruction_loss(steady, target, ssim_weight=0.0, temporal_weight=2.0)
    assert torch.allclose(base, with_temporal) and parts["temporal_mse"] == 0.0
    # same per-frame MSE as `steady`, but each change is ±0.5
    loss, parts = reconstruction_loss(flicker, target, ssim_weight=0.0, temporal_weight=2.0)
    assert parts["mse"] == pytest.approx(0.0625)
    assert parts["temporal_mse"] == pytest.approx(0.25)
    assert loss.item() == pytest.approx(0.0625 + 2.0 * 0.25)
    image = torch.rand(1, 3, 1, 8, 8)  # one frame: no changes, no term
    _, parts = reconstruction_loss(image, image * 0, ssim_weight=0.0, temporal_weight=1.0)
    assert "temporal_mse" not in parts
    assert frame_differences(flicker).shape == (1, 3, 3, 8, 8)


def test_learning_rate_warms_up_and_decays():
    config = VAETrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    assert learning_rate(config, 0) == pytest.approx(1e-4)
    assert learning_rate(config, 9) == pytest.approx(1e-3)
    assert learning_rate(config, 100) == pytest.approx(1e-4)


def test_overrides_reject_unknown_keys(tmp_path):
    config = tiny_config(tmp_path)
    assert apply_overrides(config, ["lr=0.01"]).lr == 0.01
    with pytest.raises(ValueError, match="unknown config key 'lrate'"):
        apply_overrides(config, ["lrate=0.01"])
    with pytest.raises(ValueError, match="not key=value"):
        apply_overrides(config, ["lr"])


def test_resume_continues_exactly(tmp_path, capsys):
    whole = tiny_config(tmp_path / "a")
    VAETrainer(whole, world_data(whole)).run(progress=False)
    first = tiny_config(tmp_path / "b", steps=2)
    VAETrainer(first, world_data(first)).run(progress=False)
    capsys.readouterr()
    second = tiny_config(tmp_path / "b")  # same run folder, more steps: resumes from step 2
    VAETrainer(second, world_data(second)).run(progress=False)
    # the longer run says what changed; its learning rate at step 2 is the old schedule's (the
    # warmup's peak), so no learning rate is named
    said = capsys.readouterr().out
    assert "resumed from step 2; changed since that checkpoint: steps: 2 → 4\n" in said
    # each checkpoint keeps the learning rate of its next step, which a later resume compares
    state = json.loads((latest_checkpoint(second.out_dir) / "state.json").read_text())
    assert state["lr"] == learning_rate(second, 4) and state["config"]["steps"] == 4
    expected, resumed = losses(tmp_path / "a" / "run"), losses(tmp_path / "b" / "run")
    assert len(expected) == len(resumed) == 4
    assert resumed == pytest.approx(expected, rel=1e-5)
    assert (tmp_path / "b" / "run" / "vae" / "model.safetensors").is_file()


def test_checkpoint_round_trip_and_latest(tmp_path):
    config = tiny_config(tmp_path)
    trainer = VAETrainer(config, world_data(config))
    trainer.train_step()
    trainer.step = 1
    path = trainer.save()
    assert latest_checkpoint(config.out_dir) == path
    fresh = VAETrainer(config, world_data(config))
    assert fresh.resume() and fresh.step == 1
    for a, b in zip(
        trainer.vae.state_dict().values(), fresh.vae.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    state_a = trainer.optimizer.state_dict()["state"]
    state_b = fresh.optimizer.state_dict()["state"]
    assert torch.equal(state_a[0]["exp_avg"], state_b[0]["exp_avg"])


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    config = tiny_config(tmp_path, keep_checkpoints=2)
    trainer = VAETrainer(config, world_data(config))
    for step in (1, 2, 3):
        trainer.step = step
        trainer.save()
    root = tmp_path / "run" / "checkpoints"
    kept = sorted(p.name for p in root.glob("step_*"))
    assert kept == ["step_00000002", "step_00000003"]
    assert latest_checkpoint(config.out_dir).name == "step_00000003"
    # folders of higher steps left behind (cut off before `latest` moved) never make the prune
    # remove the checkpoint just written, which `latest` names
    for stale in ("step_00000009", "step_00000010"):
        (root / stale).mkdir()
        (root / stale / "state.json").write_text("{}")
    trainer.step = 4
    trainer.save()
    assert sorted(p.name for p in root.glob("step_*")) == ["step_00000004", "step_00000010"]
    assert latest_checkpoint(config.out_dir).name == "step_00000004"
    with pytest.raises(ValueError, match="keep_checkpoints must be an int >= 1, got 0"):
        VAETrainer(tiny_config(tmp_path / "z", keep_checkpoints=0))


def test_nan_weights_are_never_checkpointed(tmp_path):
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        save_checkpoint(tmp_path, 1, {"m": model}, {}, {})
    assert latest_checkpoint(tmp_path) is None
    assert not list((tmp_path / "checkpoints").glob("step_*"))


def test_non_finite_loss_skips_the_step_and_keeps_weights(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, max_bad_steps=2)
    trainer = VAETrainer(config, world_data(config))
    before = {k: v.clone() for k, v in trainer.vae.state_dict().items()}
    monkeypatch.setattr(
        "kinema.compression.train.kl_divergence", lambda m, lv: torch.tensor(float("nan"))
    )
    assert trainer.train_step() is None
    for k, v in trainer.vae.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(RuntimeError, match="non-finite steps in a row"):
        trainer.train_step()


def test_corrupt_checkpoint_raises_naming_the_path(tmp_path):
    config = tiny_config(tmp_path)
    trainer = VAETrainer(config, world_data(config))
    path = trainer.save()
    (path / "vae.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=str(path)):
        load_checkpoint(path, {"vae": trainer.vae}, {})


def test_init_from_a_saved_vae(tmp_path):
    config = tiny_config(tmp_path / "a", steps=1)
    exported = VAETrainer(config, world_data(config)).run(progress=False)
    warm = tiny_config(tmp_path / "b", steps=1, init_from=str(exported))
    trainer = VAETrainer(warm, world_data(warm))
    saved = CausalVAE.from_pretrained(exported).state_dict()
    for key, value in trainer.vae.state_dict().items():
        assert torch.equal(value, saved[key]), key
    wrong = tiny_config(tmp_path / "c", preset="tiny", init_from=str(exported))
    with pytest.raises(ValueError, match="is not a 'tiny' VAE"):
        VAETrainer(wrong, world_data(wrong))


def test_freeze_encoder_trains_the_decoder_only(tmp_path):
    config = tiny_config(tmp_path / "a", steps=1)
    exported = VAETrainer(config, world_data(config)).run(progress=False)
    before = CausalVAE.from_pretrained(exported)
    tuned = tiny_config(tmp_path / "b", steps=3, init_from=str(exported), freeze_encoder=True)
    after = CausalVAE.from_pretrained(VAETrainer(tuned, world_data(tuned)).run(progress=False))
    old, new = before.state_dict(), after.state_dict()
    for key in old:
        same = torch.equal(old[key], new[key])
        if key.startswith("encoder.") or key.startswith("latent_"):
            assert same, f"{key} changed with a frozen encoder"
    assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    with pytest.raises(ValueError, match="freeze_encoder needs init_from"):
        VAETrainer(tiny_config(tmp_path / "c", freeze_encoder=True))


def test_latent_noise_trains_the_decoder_on_noised_latents(tmp_path):
    config = tiny_config(tmp_path / "a", steps=1)
    exported = VAETrainer(config, world_data(config)).run(progress=False)
    runs = {}
    for noise in (0.0, 0.5):
        tuned = tiny_config(
            tmp_path / f"n{noise}",
            steps=2,
            init_from=str(exported),
            freeze_encoder=True,
            latent_noise=noise,
        )
        trainer = VAETrainer(tuned, world_data(tuned))
        runs[noise] = CausalVAE.from_pretrained(trainer.run(progress=False)).state_dict()
    encoder_same = [torch.equal(runs[0.0][k], runs[0.5][k]) for k in runs[0.0] if "encoder." in k]
    decoder_same = [torch.equal(runs[0.0][k], runs[0.5][k]) for k in runs[0.0] if "decoder." in k]
    assert all(encoder_same) and not all(decoder_same)

    # the noise is in normalized units: per channel, its raw std follows latent_scale
    trainer.vae.latent_scale.copy_(torch.linspace(0.5, 8.0, trainer.vae.config.latent_channels))
    draws = [
        trainer._latent_noise(
            (1, trainer.vae.config.latent_channels, 2, 16, 16), torch.Generator().manual_seed(s)
        )
        for s in range(40)
    ]
    normalized = torch.cat(draws) / trainer.vae.latent_scale.view(1, -1, 1, 1, 1)
    per_draw_std = normalized.flatten(1).std(dim=1)
    assert per_draw_std.max() <= 0.5 * 1.1 and per_draw_std.min() < 0.2 < per_draw_std.max()

    for bad in ({"latent_noise": 0.3}, {"latent_noise": -0.1, "freeze_encoder": True}):
        with pytest.raises(ValueError, match="latent_noise="):
            VAETrainer(tiny_config(tmp_path / "c", init_from=str(exported), **bad))


def test_vae_eval_command_reports_psnr_and_speed(tmp_path, capsys):
    from kinema.cli import main
    from kinema.world.dataset import make_world, read_manifest

    config = tiny_config(tmp_path, steps=1)
    exported = VAETrainer(config, world_data(config)).run(progress=False)
    clip = read_manifest(make_world(tmp_path / "w", n=1, seed=3, progress=False))[0]["path"]
    out = tmp_path / "eval.json"
    code = main(
        [
            "vae",
            "eval",
            "--model",
            str(exported),
            "--short-side",
            "32",
            "--max-frames",
            "9",
            "--json",
            str(out),
            clip,
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    video = report["videos"][0]
    assert video["frames"] == 9 and (video["height"], video["width"]) == (32, 32)
    assert 0 < video["psnr"] < 100 and -1 <= video["ssim"] <= 1
    assert video["encode_fps"] > 0 and report["mean"]["psnr"] == video["psnr"]
    # frame by frame: one PSNR per frame, whose mean squared errors average to the clip's
    by_frame = video["psnr_by_frame"]
    assert len(by_frame) == 9 and report["psnr_by_frame"] == by_frame
    mse = sum(4.0 / 10 ** (p / 10) for p in by_frame) / 9
    assert abs(10 * math.log10(4.0 / mse) - video["psnr"]) < 1e-3
    printed = capsys.readouterr().out
    assert "mean" in printed and "PSNR by frame: 0: " in printed and ", 8: " in printed
    # the report says which VAE it measured and on how many threads
    assert report["model"]["path"] == str(exported) and len(report["model"]["sha256"]) == 64
    assert report["settings"]["threads"] == torch.get_num_threads()
    assert report["settings"]["still"] is False
    argv = ["vae", "eval", "--model", str(exported), "--short-side", "32", "--max-frames", "9"]
    assert main([*argv, "--still", "--json", str(out), clip]) == 0
    still = json.loads(out.read_text())
    assert still["settings"]["still"] is True and still["videos"][0]["name"].endswith("(still)")
    assert still["videos"][0]["frames"] == 9 and still["videos"][0]["change_psnr"] is not None
    assert main(["vae", "eval", "--model", str(exported), "--json", str(out)]) == 2
    # a video that cannot be read is an error line, not a traceback
    missing = str(tmp_path / "missing.mp4")
    assert main(["vae", "eval", "--model", str(exported), "--json", str(out), missing]) == 2
    assert "missing.mp4" in capsys.readouterr().err


def test_psnr_by_frame_averages_the_clips_that_reach_each_frame():
    from kinema.compression.evaluate import evaluate_clips

    torch.manual_seed(0)
    vae = CausalVAE(PRESETS["debug"]).eval()
    rng = np.random.default_rng(0)
    clips = {
        "long": rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8),
        "short": rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
    }
    report = evaluate_clips(vae, clips, short_side=32, max_frames=9)
    long, short = report["videos"]
    assert (long["frames"], short["frames"]) == (9, 5)
    assert len(long["psnr_by_frame"]) == 9 and len(short["psnr_by_frame"]) == 5
    by_frame = report["psnr_by_frame"]
    assert len(by_frame) == 9
    for k in range(5):
        mean = (long["psnr_by_frame"][k] + short["psnr_by_frame"][k]) / 2
        assert by_frame[k] == pytest.approx(mean)
    assert by_frame[5:] == pytest.approx(long["psnr_by_frame"][5:])


def test_refine_steps_fit_the_latents_and_say_how_far_they_moved(capsys, tmp_path):
    from kinema.cli import main
    from kinema.compression.evaluate import evaluate_clips

    torch.manual_seed(0)
    vae = CausalVAE(PRESETS["debug"]).eval()
    rng = np.random.default_rng(0)
    clips = {"c": rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)}
    one_pass = evaluate_clips(vae, clips, short_side=32, max_frames=5)
    fitted = evaluate_clips(vae, clips, short_side=32, max_frames=5, refine_steps=10)
    assert one_pass["settings"]["refine_steps"] == 0 and fitted["settings"]["refine_steps"] == 10
    assert one_pass["videos"][0]["latent_change"] is None
    assert one_pass["mean"]["latent_change"] is None
    # ten Adam steps on the decoder's error fit the clip better than the encoder's one pass
    assert fitted["mean"]["psnr"] > one_pass["mean"]["psnr"] + 0.1
    assert fitted["videos"][0]["latent_change"] > 0
    assert fitted["mean"]["latent_change"] == fitted["videos"][0]["latent_change"]
    with pytest.raises(ValueError, match="refine_steps must be >= 0, got -1"):
        evaluate_clips(vae, clips, short_side=32, max_frames=5, refine_steps=-1)
    # the command refuses a negative count before reading any video
    argv = ["vae", "eval", "--json", str(tmp_path / "r.json"), str(tmp_path / "missing.mp4")]
    assert main([*argv, "--refine-steps", "-2"]) == 2
    assert "--refine-steps must be >= 0, got -2" in capsys.readouterr().err


def test_change_psnr_measures_flicker_not_steady_error():
    from types import SimpleNamespace

    from kinema.compression.evaluate import evaluate_clips

    class OffsetVAE:
        """encode → decode adds `offsets[t]` (in [-1, 1] units) to frame t."""

        config = SimpleNamespace(space_compression=1, time_compression=4)

        def __init__(self, offsets: list[float]) -> None:
            self.offsets = torch.tensor(offsets).view(1, 1, -1, 1, 1)

        def encode(self, video: torch.Tensor) -> torch.Tensor:
            return video

        def decode(self, latents: torch.Tensor) -> torch.Tensor:
            return latents + self.offsets[:, :, : latents.shape[2]]

    frames = np.full((5, 8, 8, 3), 128, dtype=np.uint8)
    steady = evaluate_clips(OffsetVAE([0.25] * 5), {"c": frames}, short_side=8, max_frames=5)
    flicker = evaluate_clips(
        OffsetVAE([0.25, -0.25, 0.25, -0.25, 0.25]), {"c": frames}, short_side=8, max_frames=5
    )
    # the same per-frame error, but only the flickering one changes from frame to frame
    assert steady["mean"]["psnr"] == pytest.approx(flicker["mean"]["psnr"], abs=0.2)
    assert steady["videos"][0]["change_psnr"] > 90  # no change error at all (floored MSE)
    # changes of ±0.5 (8-bit rounding aside): MSE 0.25 -> PSNR 10·log10(4 / 0.25) ≈ 12.04 dB
    assert flicker["mean"]["change_psnr"] == pytest.approx(12.04, abs=0.1)
    image = evaluate_clips(OffsetVAE([0.25]), {"i": frames[:1]}, short_side=8, max_frames=1)
    assert image["videos"][0]["change_psnr"] is None and image["mean"]["change_psnr"] is None


def test_a_step_is_checkpointed_once_and_a_rewrite_replaces_it(tmp_path, monkeypatch):
    import kinema.compression.train as vae_train

    saved = []

    def counting_save(run_dir, step, *args, **kwargs):
        saved.append(step)
        return save_checkpoint(run_dir, step, *args, **kwargs)

    monkeypatch.setattr(vae_train, "save_checkpoint", counting_save)
    config = tiny_config(tmp_path, steps=2, checkpoint_every=1)
    VAETrainer(config, world_data(config)).run(progress=False)
    assert saved == [1, 2]  # the end of the run does not write step 2 again
    trainer = VAETrainer(config, world_data(config))
    assert trainer.resume() and trainer.step == 2
    trainer.save()  # the same step written again: replaced whole, nothing left behind
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000001", "step_00000002"]


def test_latest_naming_a_missing_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    config = tiny_config(tmp_path)
    trainer = VAETrainer(config, world_data(config))
    trainer.step = 1
    path = trainer.save()
    shutil.rmtree(path)
    with pytest.raises(ValueError, match="names step_00000001, which is not a complete"):
        VAETrainer(config, world_data(config)).resume()
