"""Third-party media that Kinema fetches at run time into a cache, and never commits.

Real footage comes from Debian's `python3-imageio` package (cockatoo.mp4: 1280×720, 280 frames;
realshort.mp4: 320×240, 36 frames; newtonscradle.gif), fetched with `apt-get download` and unpacked
with `dpkg-deb`. A longer clip, world.mp4 (480×270, 901 frames at 30 fps), comes from the `gradio`
wheel on PyPI (`pip download`, then just that member out of the wheel's zip). The cache is
`$KINEMA_CACHE` or `~/.cache/kinema`. When a source cannot be had (no apt, no pip, no network),
`AssetUnavailableError` says why, so callers can skip cleanly.

Real photos (`photos()`) are the ones bundled inside installed Python packages: scikit-image's
`skimage.data` and scikit-learn's `load_sample_images()`; nothing is downloaded for them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

IMAGEIO_PACKAGE = "python3-imageio"
IMAGEIO_CLIPS = ("cockatoo.mp4", "realshort.mp4", "newtonscradle.gif")
_IMAGEIO_RESOURCES = "usr/lib/python3/dist-packages/imageio/resources/images"

# Pinned so the clip (and the held-out split cut from it) is the same on every machine.
GRADIO_VERSION = "6.31.0"
GRADIO_WORLD_MEMBER = "gradio/media_assets/videos/world.mp4"
GRADIO_WORLD_SHA256 = "71944d7430c461f0cd6e7fd10cee7eb72786352a3678fc7bc0ae3d410f72aece"

# Photos that ship inside the scikit-image and scikit-learn wheels (what `skimage.data.astronaut()`
# ... and `sklearn.datasets.load_sample_images()` load), read straight from the installed package
# folders: no import of the package, never a download. All RGB, short side >= 256 px.
_BUNDLED_PHOTOS = {  # name: (package, path inside the package)
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "immunohistochemistry": ("skimage", "data/ihc.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}
MIN_PHOTO_SIDE = 256


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


def gradio_world_clip() -> Path:
    """Path of world.mp4 from the gradio wheel (480×270, 901 frames), fetched once into the cache.

    Runs `python -m pip download gradio==GRADIO_VERSION --no-deps --only-binary=:all:` into a
    temporary folder, copies the one member out of the wheel, checks its SHA-256 and renames it
    into place atomically.
    """
    path = cache_dir() / "assets" / f"gradio-{GRADIO_VERSION}" / "world.mp4"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        requirement = f"gradio=={GRADIO_VERSION}"
        pip = [sys.executable, "-m", "pip", "download", requirement, "--no-deps"]
        _run([*pip, "--only-binary=:all:", "--disable-pip-version-check", "-d", tmp], tmp, 600)
        wheels = list(Path(tmp).glob("gradio-*.whl"))
        if not wheels:
            raise AssetUnavailableError(f"pip download {requirement} produced no wheel")
        partial = Path(tmp) / "world.mp4.part"
        try:
            with (
                zipfile.ZipFile(wheels[0]) as wheel,
                wheel.open(GRADIO_WORLD_MEMBER) as src,
                partial.open("wb") as dst,
            ):
                shutil.copyfileobj(src, dst)
        except (KeyError, zipfile.BadZipFile, OSError) as e:
            raise AssetUnavailableError(
                f"cannot extract {GRADIO_WORLD_MEMBER} from {wheels[0].name}: {e}"
            ) from e
        digest = hashlib.sha256(partial.read_bytes()).hexdigest()
        if digest != GRADIO_WORLD_SHA256:
            raise AssetUnavailableError(
                f"{GRADIO_WORLD_MEMBER} in {wheels[0].name} has SHA-256 {digest}, "
                f"expected {GRADIO_WORLD_SHA256}"
            )
        os.replace(partial, path)  # same filesystem: the final name never holds a partial file
    return path


def photos() -> dict[str, np.ndarray]:
    """{name: (H, W, 3) uint8} real photos bundled with scikit-image and scikit-learn.

    A package that is not installed contributes nothing, and a photo that fails to load is left
    out; the result may be empty. Loaded once per process; the arrays are read-only (callers copy
    before editing).
    """
    return dict(_bundled_photos())


@functools.cache
def _bundled_photos() -> dict[str, np.ndarray]:
    usable = {}
    for name, (package, member) in _BUNDLED_PHOTOS.items():
        folder = _package_dir(package)
        if folder is None:
            continue
        try:
            with Image.open(folder / member) as im:
                image = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except OSError:  # not in this version of the package
            continue
        if min(image.shape[:2]) >= MIN_PHOTO_SIDE:
            image.setflags(write=False)
            usable[name] = image
    return usable


def _package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it; None if not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _run(command: list[str], cwd: str, timeout: float = 120) -> None:
    try:
        subprocess.run(
            command, cwd=cwd, check=True, capture_output=True, text=True, timeout=timeout
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise AssetUnavailableError(f"{' '.join(command)} failed: {detail.strip()[-300:]}") from e
