"""The studio end to end: `kinema.serve.app` served on 127.0.0.1 with the real Pipeline on a tiny
random model, driven in headless Chromium through Playwright (expand a prompt, generate, the
<video> loads a playable file) and through Gradio's HTTP API (the server refuses what the
widgets would have stopped).

Skips where Chromium (Debian: `apt-get install chromium`) or the playwright package is missing;
Playwright's own browser download is not used."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

from kinema.modes import Mode
from kinema.serve.app import ServeOptions, input_updates, launch, load_gradio
from kinema.serve.studio import Studio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, studio) of a running studio over the tiny model."""
    from test_serve import tiny_pipeline_generator

    root = tmp_path_factory.mktemp("studio")
    studio = Studio(tiny_pipeline_generator(root / "model"), output_dir=root / "outputs")
    app, url = launch(studio, ServeOptions(port=_free_port()), block=False)
    yield url, studio
    app.close()


def _local(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob") or parsed.hostname in ("127.0.0.1", "localhost")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_studio_in_chromium(served, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    url, studio = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            prompt = page.locator("#prompt textarea")
            prompt.fill("a red ball bounces")
            page.click("#expand")
            page.wait_for_function(
                "() => document.querySelector('#prompt textarea').value.length > 60",
                timeout=30_000,
            )
            expanded = prompt.input_value()
            assert "red" in expanded and "floor" in expanded
            page.click("#generate")
            page.wait_for_function(
                """() => {
                    const v = document.querySelector('#result-video video');
                    if (!v || !v.src) return false;
                    if (v.readyState < 2) { v.muted = true; v.play().catch(() => {}); }
                    return v.readyState >= 2 && v.duration > 0;
                }""",
                timeout=120_000,
            )
            video = page.eval_on_selector(
                "#result-video video",
                "v => ({ready: v.readyState, duration: v.duration, width: v.videoWidth,"
                " height: v.videoHeight, error: v.error && v.error.code})",
            )
            page.screenshot(path=str(tmp_path / "studio.png"), full_page=True)
            seed = page.locator("#used-seed textarea, #used-seed input").first.input_value()
            gallery_items = page.locator("#gallery img, #gallery video").count()
        finally:
            browser.close()
    assert video["error"] is None and video["ready"] >= 2
    assert video["duration"] > 0 and (video["width"], video["height"]) == (32, 32)
    assert seed.isdigit() and 0 <= int(seed) < 2**32
    assert gallery_items >= 1
    assert (tmp_path / "studio.png").stat().st_size > 10_000
    assert len(list(studio.outputs.directory.glob("kinema-*.mp4"))) >= 1
    assert [u for u in requests if not _local(u)] == []  # nothing leaves the machine


def test_server_refuses_out_of_range_requests(served) -> None:
    client_module = pytest.importorskip("gradio_client")
    url, studio = served
    client = client_module.Client(url, verbose=False)
    form = {
        "mode": "t2v",
        "prompt": "a red ball",
        "negative_prompt": "",
        "aspect": "1:1",
        "size": 32,
        "seconds": 1,
        "steps": 1,
        "guidance": 4,
        "seed": 1,
        "strength": 0.6,
        "expand_prompt": False,
        "image": None,
        "last_image": None,
        "video": None,
        "video2": None,
    }

    def error_of(**changes) -> str:
        with pytest.raises(Exception) as info:  # gradio_client raises AppError
            client.predict(*{**form, **changes}.values(), api_name="/generate")
        return str(info.value)

    # refused by the studio's own checks
    assert "characters long; the limit is 1000" in error_of(prompt="a red ball " * 200)
    assert "mode i2v needs image" in error_of(mode="i2v")
    assert "seed -5 is out of range" in error_of(seed=-5)
    # refused by Gradio's own slider and dropdown checks before the studio's (which say the same)
    assert "500" in error_of(steps=500) and "1024" in error_of(size=1024)
    assert "7:3" in error_of(aspect="7:3") and "warp" in error_of(mode="warp")
    assert studio.service.pending == 0
    expanded = client.predict("a blue box moves left", 4, api_name="/expand")
    assert "blue" in expanded and len(expanded) > 60


def test_mode_changes_show_the_inputs_a_mode_takes(served) -> None:
    gr, (_, studio) = load_gradio(), served
    visible = {}
    for mode in ("t2v", "t2i", "i2v", "edit", "connect", "long", "extend-forward"):
        *inputs, seconds, guidance = input_updates(gr, studio, mode, 60.0)
        assert guidance["value"] == studio.info.guidance_for(Mode(mode))
        visible[mode] = [name for name, u in zip(INPUTS, inputs, strict=True) if u["visible"]]
        if mode == "t2i":
            assert seconds["interactive"] is False
        else:
            assert seconds["value"] == seconds["maximum"] <= 60.0
    assert visible == {
        "t2v": [],
        "t2i": [],
        "i2v": ["image", "last_image"],
        "edit": ["video", "strength"],
        "connect": ["video", "video2"],
        "long": ["image"],
        "extend-forward": ["video"],
    }
    *_, t2v, _ = input_updates(gr, studio, "t2v", 60.0)
    *_, long, _ = input_updates(gr, studio, "long", 60.0)
    assert t2v["maximum"] == 2.0 and long["maximum"] > 2.0  # 17 frames at 8 fps per window


INPUTS = ("image", "last_image", "video", "video2", "strength")
