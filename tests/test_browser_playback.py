"""A written mp4 plays in a real browser: headless Chromium loads it in a <video> element.

Skips where Chromium is not installed (Debian: `apt-get install chromium`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kinema.video import write_video
from kinema.world.render import render_scene
from kinema.world.sampler import sample_scene

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

PAGE = """<!doctype html><html><body>
<video id="v" src="{src}" muted></video><pre id="out">pending</pre>
<script>
const v = document.getElementById("v"), out = document.getElementById("out");
v.addEventListener("loadeddata", () => {{
  out.textContent = `loaded ${{v.videoWidth}}x${{v.videoHeight}} ${{v.duration}} ${{v.readyState}}`;
}});
v.addEventListener("error", () => {{ out.textContent = `error ${{v.error && v.error.code}}`; }});
</script></body></html>"""


def browser_load(video: Path) -> str:
    """What a <video> element reports after loading `video` in headless Chromium."""
    page = video.with_suffix(".html")
    page.write_text(PAGE.format(src=video.name))
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={video.parent / 'profile'}",
        "--allow-file-access-from-files",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=90).stdout
    match = re.search(r'<pre id="out">([^<]*)</pre>', dom)
    return match.group(1) if match else f"no result in page: {dom[:200]!r}"


@pytest.mark.parametrize("size", [(96, 64), (63, 45)])
def test_world_clip_plays_in_chromium(tmp_path: Path, size: tuple[int, int]) -> None:
    spec = sample_scene(np.random.default_rng(3), *size)
    path = write_video(tmp_path / "clip.mp4", render_scene(spec), fps=spec.fps)
    status = browser_load(path)
    assert status.startswith("loaded"), status
    _, dims, duration, ready = status.split()
    even = (size[0] + size[0] % 2, size[1] + size[1] % 2)  # odd sizes are padded to even
    assert dims == f"{even[0]}x{even[1]}"
    assert abs(float(duration) - spec.num_frames / spec.fps) < 0.2
    assert int(ready) >= 2  # HAVE_CURRENT_DATA: a frame was decoded
