"""Which way the pans of WorldBench reports go, and how far their zooms go.

    python benchmarks/worldbench_pan_signs.py REPORT.json[.gz] [REPORT ...] [--suite suite]

Reads `kinema bench world --json` reports of a suite and, for every clip whose prompt pans the
camera, the camera's measured offset from the camera check (world units, camera motion of the
whole clip): "no pan along its axis" when the offset along the prompt's axis is under
`MIN_PAN_UNITS` or smaller than the offset across it, else "right way" or "opposite way" by the
sign along the axis. The offset is read even where the check calls the background untrackable, so
these counts are about the direction of what moved, not about passing the check. A model that
reads "left" from "right" has few opposite pans; one that reads only the axis has as many opposite
pans as right ones. For the clips whose prompt zooms, in and out apart: how many pass the camera
check and the median zoom measured over the clip (×1.52 for a 4-second zoom in; the check asks
for half of that in log scale, ×1.23 in and ×0.81 out). Prints a table and writes JSON (default
benchmarks/results/worldbench_pan_signs.json).
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import Counter
from pathlib import Path

from kinema.reports import read_report, write_report
from kinema.world.spec import PAN_DIRECTION, Camera
from kinema.world.suite import load_suite

MIN_PAN_UNITS = 0.15  # about 40% of a 4-second pan (PAN_UNITS_PER_S = 0.09 units per second)
OUTCOMES = ("right way", "opposite way", "no pan along its axis")
_MOVED = re.compile(r"moved \(([-+\d.]+), ([-+\d.]+)\) units")
_ZOOM = re.compile(r"zoom ×([\d.]+)")
ZOOMS = (Camera.ZOOM_IN, Camera.ZOOM_OUT)


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


def count_zooms(report: dict, cameras: dict[str, str]) -> dict[str, dict]:
    """Per zoom direction: clips, how many pass the camera check, and their median zoom."""
    found: dict[str, list[tuple[bool, float]]] = {c.value: [] for c in ZOOMS}
    for clip in report["clips"]:
        camera = cameras[Path(clip["path"]).stem]
        if camera in found:  # the camera check's detail: "moved (+0.00, -0.01) units, zoom ×1.21"
            check = next(c for c in clip["checks"] if c["category"] == "camera")
            zoom = _ZOOM.search(check["detail"])
            if zoom is None:
                raise ValueError(f"no zoom in the check detail {check['detail']!r}")
            found[camera].append((bool(check["passed"]), float(zoom.group(1))))
    return {
        camera: {
            "clips": len(rows),
            "passed": sum(p for p, _ in rows),
            "median_zoom": statistics.median(z for _, z in rows) if rows else None,
        }
        for camera, rows in found.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="kinema bench world --json reports")
    parser.add_argument("--suite", default="suite", help="the suite the reports scored")
    parser.add_argument("--json", default="benchmarks/results/worldbench_pan_signs.json")
    args = parser.parse_args()
    cameras = {e["id"]: e["spec"]["camera"] for e in load_suite(args.suite)}
    rows = {}
    for path in args.reports:
        report = read_report(path)
        counts = count_pans(report, cameras)
        rows[path] = {k: counts[k] for k in OUTCOMES} | {"zooms": count_zooms(report, cameras)}
    zoom_heads = [f"{c.value}: passed, median" for c in ZOOMS]
    print(f"{'report':<44}" + "".join(f"{k:>24}" for k in (*OUTCOMES, *zoom_heads)))
    for path, row in rows.items():
        zooms = []
        for c in ZOOMS:
            z = row["zooms"][c.value]
            median = "-" if z["median_zoom"] is None else f"×{z['median_zoom']:.2f}"
            zooms.append(f"{z['passed']}/{z['clips']}, {median}")
        cells = [str(row[k]) for k in OUTCOMES] + zooms
        print(f"{Path(path).name[-44:]:<44}" + "".join(f"{c:>24}" for c in cells))
    out = {"suite": args.suite, "min_pan_units": MIN_PAN_UNITS, "reports": rows}
    write_report(args.json, out)
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
