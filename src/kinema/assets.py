"""Third-party media that Kinema fetches at run time into a cache, and never commits.

Real footage comes from Debian's `python3-imageio` package (cockatoo.mp4: 1280×720, 280 frames;
realshort.mp4: 320×240, 36 frames; newtonscradle.gif), fetched with `apt-get download` and unpacked
with `dpkg-deb`. The cache is `$KINEMA_CACHE` or `~/.cache/kinema`. When the package cannot be had
(no apt, no network), `AssetUnavailableError` says why, so callers can skip cleanly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

IMAGEIO_PACKAGE = "python3-imageio"
IMAGEIO_CLIPS = ("cockatoo.mp4", "realshort.mp4", "newtonscradle.gif")
_IMAGEIO_RESOURCES = "usr/lib/python3/dist-packages/imageio/resources/images"


class AssetUnavailableError(RuntimeError):
    """A third-party asset could not be fetched here; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("KINEMA_CACHE", Path.home() / ".cache" / "kinema"))


def imageio_clips() -> dict[str, Path]:
    """{name: path} of the real clips in Debian's python3-imageio, fetched once into the cache."""
    target = cache_dir() / "assets" / IMAGEIO_PACKAGE
    paths = {name: target / name for name in IMAGEIO_CLIPS}
    if all(p.is_file() for p in paths.values()):
        return paths
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise AssetUnavailableError(
                f"{tool} is not installed, so {IMAGEIO_PACKAGE} cannot be fetched"
            )
    with tempfile.TemporaryDirectory() as tmp:
        _run(["apt-get", "download", IMAGEIO_PACKAGE], cwd=tmp)
        debs = list(Path(tmp).glob(f"{IMAGEIO_PACKAGE}_*.deb"))
        if not debs:
            raise AssetUnavailableError(f"apt-get download {IMAGEIO_PACKAGE} produced no .deb")
        _run(["dpkg-deb", "-x", str(debs[0]), str(Path(tmp) / "root")], cwd=tmp)
        target.mkdir(parents=True, exist_ok=True)
        for name, path in paths.items():
            source = Path(tmp) / "root" / _IMAGEIO_RESOURCES / name
            if not source.is_file():
                raise AssetUnavailableError(f"{IMAGEIO_PACKAGE} has no {name}")
            partial = path.with_suffix(path.suffix + ".part")
            shutil.copyfile(source, partial)
            os.replace(partial, path)  # never leave a half-copied file under the final name
    return paths


def _run(command: list[str], cwd: str) -> None:
    try:
        subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise AssetUnavailableError(f"{' '.join(command)} failed: {detail.strip()[-300:]}") from e
