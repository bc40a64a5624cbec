"""Training metrics: one JSON object per logged step in ``OUT/metrics.jsonl``, TensorBoard
scalars when it is installed, and the loss-curve plot of `kinema train plot`.

A row: ``{"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "skipped", "data",
"elapsed_s"}``; `loss` and `grad_norm` are null on a step skipped by the NaN guard, `skipped`
counts such steps since the start of the run, `data` is the data source's stats summed over ranks
(e.g. ``{"skipped": 3}`` unreadable videos replaced).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from kinema.atomic import atomic_write_text

__all__ = ["METRICS_NAME", "MetricsLog", "plot_losses", "read_metrics"]

METRICS_NAME = "metrics.jsonl"


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"no {METRICS_NAME} in {run_dir}: is it a `kinema train` run folder?"
        )
    return _parse_rows(path.read_text())


def _parse_rows(text: str) -> list[dict[str, Any]]:
    """Rows of a metrics file; a torn last line (a run killed mid-write) is dropped."""
    lines = [line for line in text.splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise
    return rows


class MetricsLog:
    """Appends rows to metrics.jsonl (and TensorBoard); `truncate_after` drops rows past a step."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional: the tensorboard package is not installed
                SummaryWriter = None
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop rows of steps after `step` (written after the checkpoint a run resumes from)."""
        if not self.path.is_file():
            return
        keep = [row for row in _parse_rows(self.path.read_text()) if row["step"] <= step]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in keep))

    def write(self, row: dict[str, Any]) -> None:
        row = {k: _json_number(v) for k, v in row.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, int | float) and key != "step":
                    self.writer.add_scalar(f"train/{key}", value, row["step"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def smooth(values: list[float], weight: float) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** (i + 1)))
    return out


def plot_losses(run_dir: str | Path, out: str | Path | None = None, smoothing: float = 0.9) -> Path:
    """Draw the loss curve of a run (raw and smoothed, log scale) to a PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(run_dir) if r.get("loss") is not None]
    if not rows:
        raise ValueError(f"{Path(run_dir) / METRICS_NAME} has no logged loss yet")
    steps = [r["step"] for r in rows]
    losses = [r["loss"] for r in rows]
    out = Path(out) if out is not None else Path(run_dir) / "loss.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=1, label="loss")
    if 0 < smoothing < 1 and len(losses) > 1:
        ax.plot(steps, smooth(losses, smoothing), color="tab:blue", label=f"EMA {smoothing}")
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    if min(losses) > 0 and max(losses) / min(losses) > 10:  # a log axis only for a long fall
        ax.set_yscale("log")
    ax.set_title(Path(run_dir).resolve().name)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
