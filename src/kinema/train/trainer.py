"""The DiT trainer: flow matching on packed clips, AdamW, EMA, NaN guard, atomic checkpoints.

    kinema train configs/dit-debug.yaml [--set key=value ...]
    torchrun --nproc_per_node 2 -m kinema.cli train configs/dit-debug.yaml \
        --set parallel.strategy=fsdp

Step `s` asks the data for its share of the step's global batch, ``data.samples(s, rank,
world_size)``, gives every clip its own t and noise from ``(seed, s, clip index)`` and takes one
optimizer step on the loss of the whole global batch (`kinema.train.loss` explains the
normalization that makes N ranks reproduce one process). The run is therefore a pure function of
its config: a resumed run repeats exactly the losses of an uninterrupted one.

NaN guard: a step whose loss or gradient norm is not finite leaves the weights, the optimizer and
the EMA untouched (the step counter still advances, so the next step sees new data);
`max_bad_steps` of them in a row stop the run with `TrainingDivergedError`. A checkpoint with
non-finite weights is never written.
"""

from __future__ import annotations

import fnmatch
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from kinema import lr_schedule as schedule
from kinema.checkpoint_folders import resume_message
from kinema.precision import AUTO, resolve_bf16
from kinema.train.checkpoint import (
    NonFiniteWeightsError,
    gather_model_state,
    gather_optimizer_state,
    get_rng_state,
    initial_weights,
    latest_checkpoint,
    load_initial_weights,
    load_model_state,
    load_optimizer_state,
    read_checkpoint,
    set_rng_state,
    write_checkpoint,
)
from kinema.train.config import (
    DataSource,
    OptimConfig,
    TrainConfig,
    config_to_dict,
    data_config,
    save_config,
)
from kinema.train.deadline import planned_total, step_rate
from kinema.train.ema import EMA
from kinema.train.loss import (
    FlowBatch,
    clip_generator,
    noisy_batch,
    placeholder_batch,
    squared_error,
)
from kinema.train.metrics import MetricsLog
from kinema.train.parallel import (
    DistInfo,
    all_gather_objects,
    all_reduce_sum,
    all_reduce_tensor,
    barrier,
    broadcast_flag,
    init_distributed,
    parallelize,
)
from kinema.transformer import DiT

__all__ = ["StepResult", "Trainer", "TrainingDivergedError", "learning_rate"]


class TrainingDivergedError(RuntimeError):
    """Too many non-finite steps in a row (`max_bad_steps`)."""


def learning_rate(optim: OptimConfig, total_steps: int, step: int) -> float:
    """Linear warmup to `optim.lr`, then cosine decay to ``lr * min_lr_ratio`` at the last step,
    over the whole run or over its last `optim.decay_steps` (see :mod:`kinema.lr_schedule`)."""
    return schedule.learning_rate(
        step, total_steps, optim.lr, optim.warmup_steps, optim.min_lr_ratio, optim.decay_steps
    )


@dataclass
class StepResult:
    lr: float
    tokens: int  # video tokens of the global batch
    loss: float | None = None  # None when the step was skipped
    grad_norm: float | None = None  # before clipping
    skipped: bool = False


# devices whose AdamW PyTorch fuses into one kernel per step (fused=True)
FUSED_ADAMW_DEVICES = frozenset({"cpu", "cuda"})


def adamw(
    parameters: list[torch.nn.Parameter], optim: OptimConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW, fused where PyTorch has the kernel for `device`: on a 2-core CPU the tiny DiT's
    16M parameters take 8.4 ms a step fused against 41.5 ms unfused (docs/benchmarks.md)."""
    return torch.optim.AdamW(
        parameters,
        lr=optim.lr,
        betas=optim.betas,
        weight_decay=optim.weight_decay,
        fused=True if device.type in FUSED_ADAMW_DEVICES else None,  # None: PyTorch's choice
    )


def _scalar(x: torch.Tensor) -> float:
    full = x.full_tensor() if hasattr(x, "full_tensor") else x  # a DTensor under FSDP2
    return float(full)


def select_trainable(model: torch.nn.Module, patterns: Sequence[str]) -> list[str]:
    """Freeze every parameter whose name matches none of the fnmatch `patterns` (none given:
    train all); returns the names left trainable. A pattern that matches no parameter is an
    error naming it, so a typo never freezes the whole model silently."""
    names = [name for name, _ in model.named_parameters()]
    if not patterns:
        return names
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        modules = sorted({re.sub(r"^blocks\.\d+", "blocks.*", n.rsplit(".", 1)[0]) for n in names})
        raise ValueError(
            f"model.trainable: {unmatched} match no DiT parameter; the DiT's modules are "
            f"{', '.join(modules)} (fnmatch patterns, e.g. 'blocks.*.cross_attn.*')"
        )
    trained = []
    for name, param in model.named_parameters():
        param.requires_grad_(any(fnmatch.fnmatchcase(name, p) for p in patterns))
        if param.requires_grad:
            trained.append(name)
    return trained


class Trainer:
    """Owns the DiT, its optimizer and EMA, the data and the run folder; `run()` trains.

    `data`, `vae` and `text_encoder` may be given (tests, notebooks); otherwise they are built
    from the config: the data source, `model.vae` (loaded when data, samples or export need it)
    and `model.text_encoder`.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: Any = None,
        vae: torch.nn.Module | None = None,
        text_encoder: Any = None,
        info: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.info = info or init_distributed()
        self.out = Path(config.out_dir)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.patch = tuple(config.model.patch)
        self.dit_config = config.model.dit_config()
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = DiT(self.dit_config).to(self.info.device)  # names are the DiT's own
        self.fresh_parameters: list[str] = []  # parameters model.init_from lacked (kept as built)
        if config.model.init_from and latest_checkpoint(self.out) is None:  # not on resume
            tensors = initial_weights(config.model.init_from)
            self.fresh_parameters = load_initial_weights(self.model, tensors)
        self.trained_parameters = select_trainable(self.model, config.model.trainable)
        self.bf16 = resolve_bf16(config.parallel.bf16, self.info.device)  # autocast or not
        self.forward_model = parallelize(self.model, config.parallel, self.info)
        self.optimizer = adamw(
            [p for p in self.model.parameters() if p.requires_grad], config.optim, self.info.device
        )
        self.ema = EMA(self.model, config.ema_decay)
        self._vae, self._text_encoder = vae, text_encoder
        self.data = data if data is not None else self.build_data()
        self.step = 0
        self.bad_steps = 0  # non-finite steps in a row
        self.skipped_steps = 0  # non-finite steps since the start of the run
        self.data_stats_offset: dict[str, int] = {}  # data stats of the run before a resume
        self.saved_step: int | None = None  # the step of the newest checkpoint
        # the run's length: config.steps, or with deadline_s what the time affords, fixed once
        # the decay begins (kinema.train.deadline)
        self.total_steps = config.steps
        self.resumed_state: dict[str, Any] = {}  # the checkpoint's state.json, once resumed
        self.decay_fixed = False
        self.seconds_before = 0.0  # training seconds of the run before this process resumed it
        self.clock: list[tuple[int, float]] = []  # (step, perf_counter) of this process's steps

    # --- parts built on demand -------------------------------------------------------------

    @property
    def vae(self) -> torch.nn.Module | None:
        if self._vae is None and self.config.model.vae is not None:
            from kinema.compression.vae import CausalVAE

            self._vae = CausalVAE.from_pretrained(self.config.model.vae, device=self.info.device)
            self._vae.requires_grad_(False)
        if self._vae is not None:
            channels = self._vae.config.latent_channels * math.prod(self.patch)
            if channels != self.dit_config.in_dim:
                raise ValueError(
                    f"the VAE's {self._vae.config.latent_channels} latent channels with patch "
                    f"{self.patch} make {channels}-d tokens, but the DiT's in_dim is "
                    f"{self.dit_config.in_dim}; set model.overrides.in_dim={channels}"
                )
        return self._vae

    @property
    def text_encoder(self) -> Any:
        if self._text_encoder is None:
            from kinema.text import load_text_encoder

            self._text_encoder = load_text_encoder(
                self.config.model.text_encoder,
                max_length=self.config.model.text_max_length,
                device=self.info.device,
            )
        return self._text_encoder

    def build_data(self) -> Any:
        """The configured TrainingData source."""
        config = self.config
        if config.data.source == DataSource.SYNTHETIC:
            from kinema.train.synthetic import SyntheticData

            volume = math.prod(self.patch)
            if self.dit_config.in_dim % volume:
                raise ValueError(
                    f"DiT in_dim {self.dit_config.in_dim} is not a multiple of {volume}"
                )
            return SyntheticData(
                config.data.synthetic,
                latent_channels=self.dit_config.in_dim // volume,
                text_dim=self.dit_config.text_dim,
                seed=config.seed,
                patch=self.patch,
            )
        options = data_config(config)
        if config.data.source == DataSource.CACHED:
            from kinema.data import CachedData
            from kinema.data.cache import check_cache_vae

            data = CachedData(options, options.cache_dir, self.patch)
            if self.vae is not None:
                check_cache_vae(options.cache_dir, self.vae)
            if data.text_dim != self.dit_config.text_dim:
                raise ValueError(
                    f"the cache {options.cache_dir} holds {data.text_dim}-d text tokens, but the "
                    f"DiT's text_dim is {self.dit_config.text_dim}"
                )
            return data
        from kinema.data import OnlineData, read_manifest

        if self.vae is None:
            raise ValueError("data.source online encodes videos: set model.vae to a VAE folder")
        return OnlineData(
            options, read_manifest(options.manifest), self.vae, self.text_encoder, self.patch
        )

    # --- one step ------------------------------------------------------------------------------

    def local_batch(self, step: int) -> tuple[FlowBatch, int]:
        """This rank's clips of step `step`, packed and noised (a placeholder when it has none)."""
        info, cfg = self.info, self.config
        samples = self.data.samples(step, info.rank, info.world_size)
        if not samples:
            return placeholder_batch(self.dit_config.in_dim, self.dit_config.text_dim), 0
        indices = range(info.rank, info.rank + len(samples) * info.world_size, info.world_size)
        generators = [clip_generator(cfg.seed, step, i) for i in indices]
        batch = noisy_batch(
            samples,
            self.patch,
            generators,
            shift=cfg.model.timestep_shift,
            high_noise_fraction=cfg.model.high_noise_fraction,
            high_noise_min=cfg.model.high_noise_min,
        )
        return batch, batch.num_tokens

    def train_step(self, step: int) -> StepResult:
        """One optimizer step on step `step`'s global batch (or a skipped one)."""
        cfg, info = self.config, self.info
        batch, local_tokens = self.local_batch(step)
        batch = batch.to(info.device)
        count, tokens = all_reduce_sum([batch.loss_count, local_tokens], info.device)
        lr = learning_rate(cfg.optim, self.total_steps, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        result = StepResult(lr=lr, tokens=int(tokens))
        if count == 0:  # every token of the batch is a given (clean) frame: nothing to learn
            return result
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(info.device.type, torch.bfloat16, enabled=self.bf16):
            velocity = self.forward_model(*batch.model_inputs)  # (N, D)
        sse = squared_error(velocity, batch)
        (sse * (info.world_size / count)).backward()  # DDP/FSDP average -> the global mean
        result.loss = float(all_reduce_tensor(sse)) / count
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        result.grad_norm = _scalar(norm)
        if not (math.isfinite(result.loss) and math.isfinite(result.grad_norm)):
            return self.skip(result)
        self.optimizer.step()
        self.ema.update(self.model, step)
        self.bad_steps = 0
        return result

    def skip(self, result: StepResult) -> StepResult:
        """NaN guard: drop the gradients and touch nothing else."""
        self.optimizer.zero_grad(set_to_none=True)
        self.bad_steps += 1
        self.skipped_steps += 1
        result.skipped = True
        return result

    def check_bad_steps(self, result: StepResult) -> None:
        """Stop after `max_bad_steps` non-finite steps in a row (the latest checkpoint is fine)."""
        if self.bad_steps < self.config.max_bad_steps:
            return
        latest = latest_checkpoint(self.out)
        raise TrainingDivergedError(
            f"{self.bad_steps} non-finite steps in a row (the last is step {self.step}: loss "
            f"{result.loss}, grad norm {result.grad_norm}); stopping. The latest checkpoint "
            f"({latest or 'none yet'}) holds finite weights: lower optim.lr or check the data"
        )

    # --- checkpoints ---------------------------------------------------------------------------

    def data_stats(self) -> dict[str, int]:
        """The data source's counters (`stats`) summed over ranks, plus those before a resume."""
        total = dict(self.data_stats_offset)
        for stats in all_gather_objects(dict(self.data.stats)):
            for key, value in stats.items():
                total[key] = total.get(key, 0) + int(value)
        return total

    def save(self) -> Path | None:
        """Checkpoint the run (every rank calls it; rank 0 writes). Returns the folder on rank 0."""
        model = gather_model_state(self.model)
        optimizer = gather_optimizer_state(self.model, self.optimizer)
        ema = self.ema.full_state()
        state = {
            "bad_steps": self.bad_steps,
            "skipped_steps": self.skipped_steps,
            "data_stats": self.data_stats(),
            "rng": all_gather_objects(get_rng_state()),
            "lr": learning_rate(self.config.optim, self.total_steps, self.step),
            "total_steps": self.total_steps,
            "decay_fixed": self.decay_fixed,
            "train_seconds": round(self.train_seconds(), 3),
            "world_size": self.info.world_size,
            "bf16": self.bf16,  # what parallel.bf16 resolved to on this device
            "config": config_to_dict(self.config),
        }
        path, error = None, None
        if self.info.is_main:
            try:
                path = write_checkpoint(
                    self.out, self.step, model, ema, optimizer, state, self.config.keep_checkpoints
                )
            except Exception as e:  # every rank must learn that the write failed
                error = e
        ok = broadcast_flag(error is None, self.info.device)
        if error is not None:
            raise error
        if not ok:
            raise NonFiniteWeightsError(
                f"rank 0 could not write the checkpoint of step {self.step}"
            )
        barrier()
        self.saved_step = self.step
        return path

    def resume(self) -> bool:
        """Load `latest` if there is one (every rank reads it); True if resumed."""
        path = latest_checkpoint(self.out)
        if path is None:
            return False
        ckpt = read_checkpoint(path)
        self.resumed_state = ckpt.state
        load_model_state(self.model, ckpt.model)
        load_optimizer_state(self.model, self.optimizer, ckpt.optimizer)
        self.ema.load_full_state(ckpt.ema)
        self.step = self.saved_step = ckpt.step
        self.bad_steps = int(ckpt.state["bad_steps"])
        self.skipped_steps = int(ckpt.state["skipped_steps"])
        self.data_stats_offset = {k: int(v) for k, v in ckpt.state["data_stats"].items()}
        rng = ckpt.state["rng"]
        set_rng_state(rng[self.info.rank] if self.info.rank < len(rng) else rng[0])
        self.seconds_before = float(ckpt.state.get("train_seconds", 0.0))
        if self.config.deadline_s is not None and ckpt.state.get("decay_fixed"):
            self.total_steps, self.decay_fixed = int(ckpt.state["total_steps"]), True
        return True

    # --- a deadline ----------------------------------------------------------------------------

    def train_seconds(self) -> float:
        """Seconds of training in all, this process's steps and those before it resumed."""
        if not self.clock:
            return self.seconds_before
        return self.seconds_before + self.clock[-1][1] - self.clock[0][1]

    def plan_to_deadline(self) -> None:
        """With deadline_s: the total steps the time left affords; fixed once the decay is due.

        Rank 0's clock decides and every rank follows, so all take the same steps."""
        cfg = self.config
        self.clock.append((self.step, time.perf_counter()))
        if cfg.deadline_s is None or self.decay_fixed:
            return
        rate = step_rate(self.clock)
        total = self.total_steps
        if rate is not None:
            decay = cfg.optim.decay_steps or 0
            total = planned_total(
                self.step,
                cfg.steps,
                decay,
                self.train_seconds(),
                rate,
                cfg.deadline_s,
                cfg.deadline_reserve_steps,
            )
        total = int(all_reduce_sum([total if self.info.is_main else 0], self.info.device)[0])
        self.total_steps = total
        self.decay_fixed = total <= self.step + (cfg.optim.decay_steps or 0)

    # --- the loop ------------------------------------------------------------------------------

    def run(self, progress: bool = True) -> Path | None:
        """Train to `config.steps` (or, with `deadline_s`, the steps the time affords), resuming
        from `latest`; returns the exported model folder
        (None without a VAE to export with, or when stopped by the time budget)."""
        cfg, main = self.config, self.info.is_main
        if main:
            save_config(cfg, self.out / "config.yaml")
        barrier()
        resumed = self.resume()
        metrics = MetricsLog(self.out, cfg.tensorboard) if main else None
        if metrics is not None:  # rows past the checkpoint (or of a run killed before one)
            metrics.truncate_after(self.step)
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc="dit",
            unit="step",
            disable=not (main and progress),
        )
        if main and cfg.parallel.bf16 == AUTO:
            native = "native" if self.bf16 else "not native"
            precision = "bf16 autocast" if self.bf16 else "float32"
            bar.write(f"{precision} (parallel.bf16 auto: bf16 is {native} on {self.info.device})")
        if main and resumed:  # rank 0 speaks for all
            # the schedule of a run that plans to a deadline moves anyway: no learning rates
            planned = cfg.deadline_s is None or self.decay_fixed
            lr = learning_rate(cfg.optim, self.total_steps, self.step) if planned else None
            where = latest_checkpoint(self.out)
            bar.write(resume_message(self.step, self.resumed_state, config_to_dict(cfg), lr, where))
        elif main and cfg.model.init_from:
            fresh = ", ".join(self.fresh_parameters) or "none"
            bar.write(f"started from {cfg.model.init_from}; parameters it lacked: {fresh}")
        if main and cfg.deadline_s is not None:
            fixed = f"; its decay began, {self.total_steps} steps" if self.decay_fixed else ""
            bar.write(
                f"deadline: {cfg.deadline_s:.0f} s of training, {self.seconds_before:.0f} s "
                f"spent{fixed}"
            )
        start = time.perf_counter()
        window = [start, 0]  # (time, tokens) since the last metrics row
        try:
            self.plan_to_deadline()
            while self.step < self.total_steps:
                result = self.train_step(self.step)
                self.step += 1
                window[1] += result.tokens
                was_fixed = self.decay_fixed
                self.plan_to_deadline()
                if bar.total != self.total_steps:
                    bar.total = self.total_steps
                    bar.refresh()
                if self.decay_fixed and not was_fixed:
                    bar.write(
                        f"deadline: the decay begins at step {self.step}, to end at "
                        f"{self.total_steps}"
                    )
                bar.update(1)
                done = self.step == self.total_steps
                if self.step % cfg.log_every == 0 or done:
                    self.log(result, window, start, metrics, bar)
                self.check_bad_steps(result)
                if cfg.samples.every and self.step % cfg.samples.every == 0:
                    self.render_samples()
                # a budget that runs out on the last step stops nothing: the run is done
                over_budget = self.over_budget(start) and not done
                if self.step % cfg.checkpoint_every == 0 or done or over_budget:
                    self.save()
                if over_budget:
                    bar.write(f"time budget of {cfg.time_budget_s:g} s reached at step {self.step}")
                    return None
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
        if self.saved_step != self.step:
            self.save()
        return self.export()

    def over_budget(self, start: float) -> bool:
        budget = self.config.time_budget_s
        if budget is None:
            return False
        return broadcast_flag(time.perf_counter() - start > budget, self.info.device)

    def log(
        self,
        result: StepResult,
        window: list,
        start: float,
        metrics: MetricsLog | None,
        bar: tqdm,
    ) -> None:
        """A metrics row (every rank calls it: data stats are gathered)."""
        now = time.perf_counter()
        tokens_per_s = window[1] / max(now - window[0], 1e-9)
        window[0], window[1] = now, 0
        data = self.data_stats()
        if metrics is None:
            return
        data.update(getattr(self.data, "facts", {}))  # fixed facts of the source, not summed
        row = {
            "step": self.step,
            "loss": result.loss if not result.skipped else None,
            "lr": result.lr,
            "grad_norm": result.grad_norm if not result.skipped else None,
            "tokens": result.tokens,
            "tokens_per_s": round(tokens_per_s, 1),
            "skipped": self.skipped_steps,
            "data": data,
            "elapsed_s": round(now - start, 3),
        }
        if self.config.deadline_s is not None:
            row["total_steps"] = self.total_steps
        metrics.write(row)
        loss = "skipped" if row["loss"] is None else f"{row['loss']:.4f}"
        bar.set_postfix(loss=loss, tok_s=f"{tokens_per_s:.0f}", skipped=self.skipped_steps)

    # --- EMA weights: samples and export -----------------------------------------------------

    def ema_model(self) -> DiT | None:
        """A plain DiT holding the EMA weights, on rank 0 (every rank calls it; None elsewhere)."""
        tensors = self.ema.full_state()
        if not self.info.is_main:
            return None
        model = DiT(self.dit_config)
        model.load_state_dict(tensors, strict=True)
        return model.to(self.info.device).eval()

    def render_samples(self) -> Path | None:
        """Sample videos of the fixed prompts with the EMA weights: OUT/samples/step-N/."""
        dit = self.ema_model()
        if dit is None:
            return None
        if self.vae is None:
            tqdm.write("samples need model.vae (a VAE folder to decode with); skipping them")
            return None
        from kinema.train.export import render_prompts

        directory = self.out / "samples" / f"step-{self.step}"
        render_prompts(dit, self.vae, self.text_encoder, self.config, directory)
        return directory

    def export(self) -> Path | None:
        """EMA weights + the VAE -> a model folder OUT/model (rank 0; every rank calls it)."""
        dit = self.ema_model()
        if dit is None:
            return None
        if self.vae is None:
            tqdm.write("no model.vae: the run is not exported as a model folder")
            return None
        from kinema.train.export import export_model

        return export_model(self.out / "model", dit, self.vae, self.config, self.step)
