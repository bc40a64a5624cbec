"""Which way the pans of WorldBench reports go: along the prompt, against it, or not along its axis.

    python benchmarks/worldbench_pan_signs.py REPORT.json[.gz] [REPORT ...] [--suite suite]

Reads `kinema bench world --json` reports of a suite and, for every clip whose prompt pans the
camera, the camera's measured offset from the camera check (world units, camera motion of the
whole clip): "no pan along its axis" when the offset along the prompt's axis is under
`MIN_PAN_UNITS` or smaller than the offset across it, else "right way" or "opposite way" by the
sign along the axis. The offset is read even where the check calls the background untrackable, so
these counts are about the direction of what moved, not about passing the check. A model that
reads "left" from "right" has few opposite pans; one that reads only the axis has as many opposite
pans as right ones. Prints a table and writes JSON (default
benchmarks/results/worldbench_pan_signs.json).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from kinema.reports import read_report, write_report
from kinema.world.spec import PAN_DIRECTION, Camera
from kinema.world.suite import load_suite

MIN_PAN_UNITS = 0.15  # about 40% of a 4-second pan (PAN_UNITS_PER_S = 0.09 units per second)
OUTCOMES = ("right way", "opposite way", "no pan along its axis")
_MOVED = re.compile(r"moved \(([-+\d.]+), ([-+\d.]+)\) units")


def pan_outcome(camera: str, detail: str) -> str:
    """One pan's outcome from its camera check's detail ("moved (+0.01, -0.35) units, ...")."""
    found = _MOVED.search(detail)
    if found is None:
        raise ValueError(f"no camera offset in the check detail {detail!r}")
    moved = (float(found.group(1)), float(found.group(2)))
    dx, dy = PAN_DIRECTION[Camera(camera)]  # a unit vector along x or y
    along = moved[0] * dx + moved[1] * dy
    across = abs(moved[0] * dy - moved[1] * dx)
    if abs(along) < MIN_PAN_UNITS or across > abs(along):
        return "no pan along its axis"
    return "right way" if along > 0 else "opposite way"


def count_pans(report: dict, cameras: dict[str, str]) -> Counter:
    counts: Counter = Counter()
    for clip in report["clips"]:
        camera = cameras[Path(clip["path"]).stem]
        if Camera(camera) in PAN_DIRECTION:
            check = next(c for c in clip["checks"] if c["category"] == "camera")
            counts[pan_outcome(camera, check["detail"])] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="kinema bench world --json reports")
    parser.add_argument("--suite", default="suite", help="the suite the reports scored")
    parser.add_argument("--json", default="benchmarks/results/worldbench_pan_signs.json")
    args = parser.parse_args()
    cameras = {e["id"]: e["spec"]["camera"] for e in load_suite(args.suite)}
    rows = {}
    for path in args.reports:
        counts = count_pans(read_report(path), cameras)
        rows[path] = {k: counts[k] for k in OUTCOMES}
    print(f"{'report':<52}" + "".join(f"{k:>24}" for k in OUTCOMES))
    for path, row in rows.items():
        print(f"{Path(path).name[-52:]:<52}" + "".join(f"{row[k]:>24}" for k in OUTCOMES))
    out = {"suite": args.suite, "min_pan_units": MIN_PAN_UNITS, "reports": rows}
    write_report(args.json, out)
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
