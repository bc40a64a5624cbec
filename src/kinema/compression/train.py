"""Train the video VAE: MSE + L1 + SSIM reconstruction, a small KL, and an optional patch-GAN.

    kinema vae train --preset small --out runs/vae --steps 3000 [--set key=value ...]

Each step accumulates gradients over `clips_per_step` clips of mixed sources, sizes and lengths
(`kinema.compression.data.MixedClipDataset`). The clips and the posterior noise of step `s` are
drawn from `default_rng([seed, s])`, so a resumed run continues exactly as if never stopped.
Checkpoints (model, optimizer, step) are atomic (`kinema.compression.checkpoint`); a run restarted
with the same `--out` resumes from `latest`. A non-finite loss skips the step; many in a row stop
the run. At the end, per-channel latent statistics are measured and the VAE is exported to
`OUT/vae`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from kinema import lr_schedule as schedule
from kinema.checkpoint_folders import resume_message
from kinema.compression.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from kinema.compression.data import MixedClipDataset
from kinema.compression.losses import (
    PatchDiscriminator,
    hinge_d_loss,
    hinge_g_loss,
    kl_divergence,
    psnr,
    reconstruction_loss,
)
from kinema.compression.vae import PRESETS, CausalVAE
from kinema.precision import AUTO, resolve_bf16


@dataclass
class VAETrainConfig:
    preset: str = "tiny"  # a name in kinema.compression.vae.PRESETS
    init_from: str | None = None  # start from a saved VAE folder's weights (not its optimizer)
    # train the decoder only (needs init_from): the encoder, hence the latents and their
    # normalization, stay those of init_from, so a DiT trained on them stays valid
    freeze_encoder: bool = False
    # decoder noise augmentation (needs freeze_encoder): each clip's latents get Gaussian noise of
    # a std drawn uniformly in [0, latent_noise], in normalized units, before decoding, so the
    # decoder learns to forgive the small errors of latents a DiT generates
    latent_noise: float = 0.0
    out_dir: str = "runs/vae"  # checkpoints, metrics.jsonl, config.json and the exported vae/
    steps: int = 3000  # optimizer steps
    clips_per_step: int = 4  # clips whose gradients are accumulated into one step
    lr: float = 4e-4  # AdamW peak learning rate, after a linear warmup
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decay down to lr · min_lr_ratio
    decay_steps: int | None = None  # None: decay over the whole run; N: hold lr, decay the last N
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    kl_weight: float = 1e-6
    mse_weight: float = 1.0
    l1_weight: float = 0.0  # L1 slows learning of small objects a lot (see losses.py)
    ssim_weight: float = 0.05
    chroma_weight: float = 0.0  # MSE of chroma (Cb, Cr): speeds up small saturated objects
    temporal_weight: float = 0.0  # MSE of frame-to-frame changes: penalizes flicker
    gan_weight: float = 0.0  # 0 disables the patch-GAN stage
    gan_start: int = 2000  # step at which the discriminator starts to count
    sizes: tuple[tuple[int, int], ...] = ((64, 64), (64, 96), (96, 64), (128, 128))  # (H, W)
    lengths: tuple[int, ...] = (1, 9, 17)  # frames per clip (1 + 4k)
    still_fraction: float = 0.0  # share of clips (> 1 frame) that hold still: one frame repeated
    source_weights: dict[str, float] = field(
        default_factory=lambda: {"world": 0.5, "video": 0.25, "photo": 0.25}
    )
    seed: int = 0
    threads: int = 2  # torch CPU threads
    # bf16 autocast for the forward pass (fp32 weights and optimizer); "auto": where the CPU
    # computes bf16 natively (AVX512-BF16 or AMX), float32 elsewhere (kinema.precision)
    bf16: bool | str = "auto"
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 3  # the newest K checkpoints are kept, older ones removed
    max_bad_steps: int = 20  # consecutive non-finite steps before the run stops
    time_budget_s: float | None = None  # stop (with a checkpoint) after this much wall time

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """ValueError naming the first field outside its bounds (VAE_BOUNDS)."""
        from kinema.train.config import check_bounds  # here: kinema.train imports this module

        check_bounds(self, VAE_BOUNDS)


# (field, what a valid value is, test), checked by VAETrainConfig.check (None passes)
VAE_BOUNDS: tuple[tuple[str, str, Callable[[Any], bool]], ...] = (
    ("steps", "an int >= 1", lambda v: v >= 1),
    ("clips_per_step", "an int >= 1", lambda v: v >= 1),
    ("lr", "a finite number > 0", lambda v: 0 < v < math.inf),
    ("warmup_steps", "an int >= 0", lambda v: v >= 0),
    ("min_lr_ratio", "a number in [0, 1]", lambda v: 0 <= v <= 1),
    ("decay_steps", "an int >= 1 (or None: decay over the whole run)", lambda v: v >= 1),
    ("weight_decay", "a finite number >= 0", lambda v: 0 <= v < math.inf),
    ("grad_clip", "a number > 0", lambda v: v > 0),
    ("threads", "an int >= 1", lambda v: v >= 1),
    ("log_every", "an int >= 1", lambda v: v >= 1),
    ("checkpoint_every", "an int >= 1", lambda v: v >= 1),
    ("keep_checkpoints", "an int >= 1", lambda v: v >= 1),
    ("max_bad_steps", "an int >= 1", lambda v: v >= 1),
    ("time_budget_s", "a number >= 0 (or None: no budget)", lambda v: v >= 0),
)


def apply_overrides(config: VAETrainConfig, items: list[str]) -> VAETrainConfig:
    """`key=value` overrides (JSON values, or bare strings), each type-checked against its
    field; an unknown key or a value of the wrong type raises ValueError naming the key."""
    from kinema.train.config import parse_value  # here: kinema.train imports this module

    fields = {f.name for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(VAETrainConfig)
    changes = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        if key not in fields:
            raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(fields))}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        changes[key] = parse_value(hints[key], value, key)
    return dataclasses.replace(config, **changes)


def learning_rate(config: VAETrainConfig, step: int) -> float:
    """Warmup, then cosine decay over the run or its last `decay_steps` (kinema.lr_schedule)."""
    return schedule.learning_rate(
        step, config.steps, config.lr, config.warmup_steps, config.min_lr_ratio, config.decay_steps
    )


class VAETrainer:
    """Owns the model, optimizers, data and run folder; `run()` trains to `config.steps`."""

    def __init__(self, config: VAETrainConfig, data: MixedClipDataset | None = None) -> None:
        if config.preset not in PRESETS:
            raise ValueError(f"unknown VAE preset {config.preset!r}; valid: {sorted(PRESETS)}")
        config.check()
        self.config = config
        self.out = Path(config.out_dir)
        self.bf16 = resolve_bf16(config.bf16, "cpu")  # autocast or not (it trains on the CPU)
        torch.manual_seed(config.seed)
        if config.init_from is not None:
            self.vae = CausalVAE.from_pretrained(config.init_from)
            if self.vae.config != PRESETS[config.preset]:
                raise ValueError(
                    f"init_from {config.init_from!r} is not a {config.preset!r} VAE; "
                    f"set preset to match its config.json"
                )
        else:
            self.vae = CausalVAE(PRESETS[config.preset])
        if config.freeze_encoder:
            if config.init_from is None:
                raise ValueError("freeze_encoder needs init_from: the VAE whose encoder to keep")
            self.vae.encoder.requires_grad_(False)
        if config.latent_noise < 0 or (config.latent_noise > 0 and not config.freeze_encoder):
            raise ValueError(
                f"latent_noise={config.latent_noise} is invalid: use 0, or a positive std with "
                "freeze_encoder=true (a trainable encoder would grow its latents to beat the noise)"
            )
        self.optimizer = torch.optim.AdamW(
            [p for p in self.vae.parameters() if p.requires_grad],
            lr=config.lr,
            betas=(0.9, 0.99),
            weight_decay=config.weight_decay,
        )
        self.disc = PatchDiscriminator() if config.gan_weight > 0 else None
        self.disc_optimizer = (
            torch.optim.AdamW(self.disc.parameters(), lr=config.lr, betas=(0.5, 0.9))
            if self.disc is not None
            else None
        )
        self.data = data or MixedClipDataset(
            sizes=config.sizes,
            lengths=config.lengths,
            weights=config.source_weights,
            seed=config.seed,
            still_fraction=config.still_fraction,
        )
        self.step = 0
        self.bad_steps = 0
        self.resumed_state: dict[str, Any] = {}  # the checkpoint's state.json, once resumed

    # --- state ---------------------------------------------------------------------------------

    def _models(self) -> dict[str, torch.nn.Module]:
        return {"vae": self.vae, **({"disc": self.disc} if self.disc is not None else {})}

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optimizers = {"vae": self.optimizer}
        if self.disc_optimizer is not None:
            optimizers["disc"] = self.disc_optimizer
        return optimizers

    def resume(self) -> bool:
        path = latest_checkpoint(self.out)
        if path is None:
            return False
        self.resumed_state = load_checkpoint(path, self._models(), self._optimizers())
        self.step = int(self.resumed_state["step"])
        return True

    def save(self) -> Path:
        state = {
            "config": self.config.to_dict(),
            "bad_steps": self.bad_steps,
            "lr": learning_rate(self.config, self.step),  # of the next step
        }
        return save_checkpoint(
            self.out,
            self.step,
            self._models(),
            self._optimizers(),
            state,
            keep=self.config.keep_checkpoints,
        )

    # --- training ------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float] | None:
        """One optimizer step over `clips_per_step` clips; None if it was skipped (non-finite)."""
        config = self.config
        rng = np.random.default_rng([config.seed, self.step])
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(config, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        use_gan = self.disc is not None and self.step >= config.gan_start
        totals: dict[str, float] = {}
        fakes, reals = [], []
        for _ in range(config.clips_per_step):
            clip = self.data.sample(rng)[None]  # (1, 3, T, H, W)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                mean, logvar = self.vae.encode_distribution(clip)
                mean, logvar = mean.float(), logvar.float()
                noise = torch.Generator().manual_seed(int(rng.integers(2**62)))  # step-seeded
                z = mean + torch.randn(mean.shape, generator=noise) * (0.5 * logvar).exp()
                if config.latent_noise > 0:
                    z = z + self._latent_noise(z.shape, noise)
                recon = self.vae.decode_raw(z).float()
            rec, parts = reconstruction_loss(
                recon,
                clip,
                config.mse_weight,
                config.l1_weight,
                config.ssim_weight,
                config.chroma_weight,
                config.temporal_weight,
            )
            kl = kl_divergence(mean, logvar)
            loss = rec + config.kl_weight * kl
            if use_gan:
                loss = loss + config.gan_weight * hinge_g_loss(self.disc(recon))
                fakes.append(recon.detach())
                reals.append(clip)
            if not torch.isfinite(loss):
                return self._skip()
            (loss / config.clips_per_step).backward()
            parts.update(loss=loss.item(), kl=kl.item(), psnr=psnr(recon.detach(), clip).item())
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v / config.clips_per_step
        norm = torch.nn.utils.clip_grad_norm_(self.vae.parameters(), config.grad_clip)
        if not torch.isfinite(norm):
            return self._skip()
        self.optimizer.step()
        if use_gan:
            totals["d_loss"] = self._discriminator_step(reals, fakes)
        self.bad_steps = 0
        return {**totals, "grad_norm": float(norm), "lr": self.optimizer.param_groups[0]["lr"]}

    def _latent_noise(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        """Raw-unit noise whose std in normalized units is drawn uniformly in [0, latent_noise]."""
        std = torch.rand((), generator=generator) * self.config.latent_noise
        scale = self.vae.latent_scale.view(1, -1, 1, 1, 1)  # raw = normalized · scale + shift
        return torch.randn(shape, generator=generator) * std * scale

    def _discriminator_step(self, reals: list[torch.Tensor], fakes: list[torch.Tensor]) -> float:
        self.disc_optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for real, fake in zip(reals, fakes, strict=True):
            d_loss = hinge_d_loss(self.disc(real), self.disc(fake)) / len(reals)
            d_loss.backward()
            total += float(d_loss)
        self.disc_optimizer.step()
        return total

    def _skip(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        if self.bad_steps >= self.config.max_bad_steps:
            raise RuntimeError(
                f"{self.bad_steps} non-finite steps in a row at step {self.step}; stopping. "
                "Lower lr or check the data."
            )
        return None

    def run(self, progress: bool = True) -> Path:
        """Train to `config.steps` (resuming if a checkpoint exists); export and return OUT/vae."""
        config = self.config
        torch.set_num_threads(config.threads)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        resumed = self.resume()
        start_time, start_step = time.perf_counter(), self.step
        from kinema.train.metrics import MetricsLog  # here: kinema.train imports this module

        metrics = MetricsLog(self.out, tensorboard=False)
        metrics.truncate_after(self.step)  # rows logged after the checkpoint resumed from
        bar = tqdm(total=config.steps, initial=self.step, desc="vae", disable=not progress)
        if config.bf16 == AUTO:
            precision = "bf16 autocast" if self.bf16 else "float32"
            bar.write(f"{precision} (bf16 auto: bf16 is {'' if self.bf16 else 'not '}native here)")
        if resumed:
            lr = learning_rate(config, self.step)
            bar.write(resume_message(self.step, self.resumed_state, config.to_dict(), lr))
        saved_step = self.step if resumed else None
        while self.step < config.steps:
            logs = self.train_step()
            self.step += 1
            bar.update(1)
            if logs is not None and self.step % config.log_every == 0:
                elapsed = time.perf_counter() - start_time
                logs.update(
                    step=self.step,
                    clips_per_s=(self.step - start_step) * config.clips_per_step / elapsed,
                )
                metrics.write(logs)
                bar.set_postfix(loss=f"{logs['loss']:.4f}", psnr=f"{logs['psnr']:.1f}")
            over_budget = (
                config.time_budget_s is not None
                and time.perf_counter() - start_time > config.time_budget_s
            )
            if self.step % config.checkpoint_every == 0 or over_budget:
                self.save()
                saved_step = self.step
            if over_budget:
                bar.write(
                    f"time budget of {config.time_budget_s:.0f} s reached at step {self.step}"
                )
                break
        bar.close()
        metrics.close()
        if saved_step != self.step:  # the same step is never written twice
            self.save()
        return self.export()

    @torch.no_grad()
    def export(self, calibration_clips: int = 32) -> Path:
        """Measure per-channel latent statistics on fresh clips (unless the encoder is frozen:
        then they stay those of init_from) and save the VAE to OUT/vae."""
        target = self.out / "vae"
        if self.config.freeze_encoder:
            self.vae.save_pretrained(target)
            return target
        rng = np.random.default_rng([self.config.seed, 10**9])
        means = [
            self.vae.encode_distribution(self.data.sample(rng)[None])[0]
            for _ in range(calibration_clips)
        ]
        self.vae.set_latent_stats(*self.vae.measure_latent_stats(means))
        self.vae.save_pretrained(target)
        return target
