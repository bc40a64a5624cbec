"""`kinema train`: run a training config, plot a run's loss, export a run as a model folder.

    kinema train CONFIG.yaml [--set key=value ...]   train (resumes from the config's out_dir)
    kinema train plot RUN_DIR [--out loss.png]       draw the loss curve
    kinema train export RUN_DIR [--out DIR] [--bf16] EMA weights + VAE -> a model folder
    kinema train export RUN_DIR --expert-of MODEL --out DIR [--boundary 0.9] [--bf16] [--int8-delta]
                                                     MODEL + the run as its high-noise expert
    kinema train recipe [--out DIR] [--steps N] ...  the default model end to end (resumes)

Under torchrun every process runs the same command:
``torchrun --nproc_per_node 2 -m kinema.cli train CONFIG.yaml --set parallel.strategy=ddp``.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kinema.train.config import TrainConfig

__all__ = ["main"]


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kinema train",
        description="Train the DiT (or the VAE, stage: vae) from a YAML config; rerunning the "
        "same command resumes from the latest checkpoint in its out_dir.",
    )
    p.add_argument("config", help="YAML config (e.g. configs/dit-debug.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=3e-4 --set model.overrides.depth=4 "
        "(YAML values; repeatable)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kinema train plot", description="draw a run's loss curve")
    p.add_argument("run_dir", help="the run folder (a config's out_dir)")
    p.add_argument("--out", default=None, help="PNG to write (default RUN_DIR/loss.png)")
    p.add_argument("--smoothing", type=float, default=0.9, help="EMA weight of the smooth curve")
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kinema train export",
        description="write the EMA weights of a run's latest checkpoint and its VAE as a model "
        "folder (kinema.hub)",
    )
    p.add_argument("run_dir", help="the run folder (a config's out_dir)")
    p.add_argument("--out", default=None, help="model folder to write (default RUN_DIR/model)")
    p.add_argument(
        "--bf16", action="store_true", help="store the transformer in bfloat16 (half the size)"
    )
    p.add_argument(
        "--expert-of",
        default=None,
        metavar="MODEL",
        help="write MODEL's folder with the run as its high-noise expert (only the tensors the "
        "run changed are stored; needs --out)",
    )
    p.add_argument(
        "--boundary",
        type=float,
        default=None,
        help="with --expert-of: the expert samples every step from t >= this (default 0.9)",
    )
    p.add_argument(
        "--int8-delta",
        action="store_true",
        help="with --expert-of: store the expert's matrices as int8 differences from MODEL's, "
        "one scale per row (half the size of bfloat16)",
    )
    return p


def run_train(argv: Sequence[str]) -> int:
    from kinema.train.config import Stage, load_config, vae_train_config

    args = _run_parser().parse_args(argv)
    config = load_config(args.config, args.overrides)
    if config.stage == Stage.VAE:
        from kinema.compression.train import VAETrainer
        from kinema.train.config import save_config

        save_config(config, f"{config.out_dir}/config.yaml")
        exported = VAETrainer(vae_train_config(config)).run(progress=not args.no_progress)
        print(f"VAE: {exported}")
        return 0
    return run_dit(config, progress=not args.no_progress)


def run_dit(config: TrainConfig, progress: bool = True) -> int:
    """Train the DiT in this process (one of torchrun's, or alone); 1 if training stopped."""
    from kinema.train.config import DataSource
    from kinema.train.parallel import destroy_distributed
    from kinema.train.trainer import Trainer, TrainingDivergedError

    stops: tuple[type[Exception], ...] = (TrainingDivergedError,)
    if config.data.source != DataSource.SYNTHETIC:
        from kinema.data import TooManyCorruptVideosError

        stops = (*stops, TooManyCorruptVideosError)
    trainer: Trainer | None = None
    try:
        trainer = Trainer(config)
        exported = trainer.run(progress=progress)
        is_main, step = trainer.info.is_main, trainer.step
    except stops as e:
        print(f"kinema train: stopped: {e}", file=sys.stderr)
        return 1
    finally:
        # the DDP/FSDP model and its communication state go before the process group does: freed
        # after it (when this function returns), they could hang or abort the process at exit
        trainer = None
        gc.collect()
        destroy_distributed()
    if is_main:
        print(f"run: {config.out_dir} (step {step})")
        if exported is not None:
            print(f"model: {exported}")
    return 0


def run_plot(argv: Sequence[str]) -> int:
    from kinema.train.metrics import plot_losses

    args = _plot_parser().parse_args(argv)
    print(plot_losses(args.run_dir, args.out, args.smoothing))
    return 0


def run_export(argv: Sequence[str]) -> int:
    import torch

    from kinema.train.export import DEFAULT_BOUNDARY, export_expert, export_run

    args = _export_parser().parse_args(argv)
    dtype = torch.bfloat16 if args.bf16 else None
    if args.expert_of is None:
        if args.boundary is not None or args.int8_delta:
            raise ValueError(
                "--boundary and --int8-delta are the high-noise expert's: give --expert-of MODEL"
            )
        print(export_run(args.run_dir, args.out, dit_dtype=dtype))
        return 0
    if args.out is None:
        raise ValueError("--expert-of writes a new model folder: give --out DIR")
    boundary = DEFAULT_BOUNDARY if args.boundary is None else args.boundary
    print(export_expert(args.run_dir, args.expert_of, args.out, boundary, dtype, args.int8_delta))
    return 0


def run_recipe(argv: Sequence[str]) -> int:
    from kinema.train.recipe import main as recipe_main

    return recipe_main(argv)


TOOLS: dict[str, Callable[[Sequence[str]], int]] = {
    "plot": run_plot,
    "export": run_export,
    "recipe": run_recipe,
}


def main(argv: Sequence[str]) -> int:
    """`kinema train ...` after the word train: a tool name (plot, export, recipe) or a config."""
    argv = list(argv)
    if argv and argv[0] in TOOLS:
        return TOOLS[argv[0]](argv[1:])
    return run_train(argv)
