"""WorldBench against sampling settings (mode, guidance, steps, solver, ...), side by side.

    python benchmarks/worldbench_sampling.py [--model DIR] [--limit 60] \
        [--setting guidance=4 --setting guidance=10,steps=30 ...] [--json OUT]
    python benchmarks/worldbench_sampling.py --setting mode=i2v,guidance=4 \
        --setting mode=i2v,guidance=1 ...   # image to video from each scene's first frame

Settings: mode (t2v, i2v, extend), guidance, steps, solver, image_first, camera_noise. Each
setting generates the first `--limit` prompts of a suite with `kinema bench world` (same
prompts, same seeds, so the settings are paired clip by clip) into its own folder under
`--out-root` (a folder made before under the same model and settings is reused), then scores
them. The table gives each setting's overall and per-category pass rates, its palette share
(kinema.world.look) and its difference from the first setting with a 95% interval from a paired
bootstrap over clips: with 60 prompts one setting's overall moves by about 0.02 from the draw of
prompts alone. Writes JSON (default benchmarks/results/worldbench_sampling.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from kinema.bench.compare import compare_reports
from kinema.cli import main as kinema
from kinema.reports import write_report
from kinema.world.bench import CATEGORIES

KEYS = {
    "mode": str,
    "guidance": float,
    "steps": int,
    "solver": str,
    "image_first": bool,
    "camera_noise": float,
}
DEFAULT_SETTINGS = ["guidance=4", "guidance=7", "guidance=10", "guidance=14", "guidance=20"]


def parse_setting(text: str) -> dict[str, Any]:
    """'guidance=10,steps=30' -> {'guidance': 10.0, 'steps': 30}."""
    setting: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in KEYS:
            raise ValueError(
                f"bad setting part {part!r} in {text!r}: use KEY=VALUE, KEY in {list(KEYS)}"
            )
        if KEYS[key] is bool:
            if value not in ("0", "1", "true", "false"):
                raise ValueError(f"{key} must be 0/1/true/false, got {value!r}")
            setting[key] = value in ("1", "true")
        else:
            setting[key] = KEYS[key](value)
    return setting


def label(setting: dict[str, Any]) -> str:
    def text(v: Any) -> str:
        return str(int(v)) if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)

    return "-".join(f"{k}{text(v)}" for k, v in setting.items())


def bench_args(setting: dict[str, Any]) -> list[str]:
    args = []
    for key, value in setting.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            args += [flag, str(value)]
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    parser.add_argument("--suite", choices=["suite", "heldout"], default="suite")
    parser.add_argument("--limit", type=int, default=60, help="the first N prompts")
    parser.add_argument(
        "--setting",
        action="append",
        default=None,
        help="KEY=VALUE[,KEY=VALUE]: mode (t2v, i2v or extend), guidance, steps, solver, "
        f"image_first, camera_noise (repeat; default: {' '.join(DEFAULT_SETTINGS)})",
    )
    parser.add_argument("--out-root", default="outputs/worldbench-sampling")
    parser.add_argument("--json", default="benchmarks/results/worldbench_sampling.json")
    args = parser.parse_args()
    settings = [parse_setting(s) for s in args.setting or DEFAULT_SETTINGS]
    rows = []
    for setting in settings:
        name = label(setting)
        out = Path(args.out_root) / f"{args.suite}-{args.limit}-{name}"
        report_path = out / "report.json"
        cmd = [
            "bench",
            "world",
            "--suite",
            args.suite,
            "--limit",
            str(args.limit),
            "--out",
            str(out),
            "--json",
            str(report_path),
            *bench_args(setting),
        ]
        if args.model is not None:
            cmd += ["--model", args.model]
        kinema(cmd)
        rows.append(
            {"setting": setting, "label": name, "report": json.loads(report_path.read_text())}
        )
    for row in rows:  # overall minus the first row's, paired clip by clip
        row["vs_first"] = compare_reports(rows[0]["report"], row["report"], draws=2000)["overall"]
    print(f"\n{args.suite} suite, first {args.limit} prompts; diff: overall minus the first row's")
    print(
        f"{'setting':<28}{'overall':>8}"
        + "".join(f"{c[:6]:>8}" for c in CATEGORIES)
        + f"{'palette':>8}{'diff':>8}  95% interval"
    )
    for row in rows:
        r, d = row["report"], row["vs_first"]
        cats = "".join(f"{r['categories'].get(c, float('nan')):>8.3f}" for c in CATEGORIES)
        palette = r.get("palette_share")
        palette = float("nan") if palette is None else palette
        print(
            f"{row['label']:<28}{r['overall']:>8.3f}{cats}{palette:>8.3f}{d['diff']:>+8.3f}"
            f"  [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
        )
    result = {
        "model": args.model or "models/default",
        "suite": args.suite,
        "limit": args.limit,
        "rows": [
            {
                "setting": r["setting"],
                "overall": r["report"]["overall"],
                "categories": r["report"]["categories"],
                "palette_share": r["report"].get("palette_share"),
                "vs_first": r["vs_first"],
            }
            for r in rows
        ],
    }
    write_report(args.json, result)
    print(f"report: {args.json}")


if __name__ == "__main__":
    main()
