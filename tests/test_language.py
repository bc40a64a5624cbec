"""The language layer: the world prompt parser and offline expander, the OpenAI-compatible client
and LLM expander, and re-captioning, against a fake OpenAI-compatible server on 127.0.0.1 (real
HTTP through http.server in a thread)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kinema.cli import main
from kinema.language.caption import CaptionJob, RateLimiter, keyframes, recaption_manifest
from kinema.language.expand import (
    ExpanderKind,
    LLMExpander,
    SceneError,
    WorldExpander,
    layout_scene,
    load_expander,
    scene_from_prompt,
)
from kinema.language.openai_client import (
    ChatClient,
    EndpointConfig,
    EndpointHTTPError,
    EndpointTimeoutError,
    EndpointUnreachableError,
    MalformedReplyError,
)
from kinema.language.world_parse import parse_world_prompt
from kinema.world.bench import bench_video
from kinema.world.captions import MOTION_WORDS, SHAPE_WORDS, short_prompt
from kinema.world.dataset import make_world
from kinema.world.render import render_scene
from kinema.world.sampler import is_valid, sample_scene
from kinema.world.spec import Camera, Color, Direction, Motion, Shape, Size, Speed, Tone

# --- a fake OpenAI-compatible server ------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes | None = None  # None: a chat completion with `content`
    content: str = "A detailed caption."
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeOpenAI:
    """Answers POST /v1/chat/completions with `reply(request_json)`; records every request."""

    reply: Callable[[dict], Reply] = lambda request: Reply()
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    r = Reply(status=404, body=b'{"error": "not found"}')
                else:
                    r = fake.reply(body)
                time.sleep(r.delay)
                data = r.body
                if data is None:
                    message = {"role": "assistant", "content": r.content}
                    data = json.dumps({"choices": [{"index": 0, "message": message}]}).encode()
                try:
                    self.send_response(r.status)
                    for k, v in r.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    server = FakeOpenAI()
    yield server
    server.close()


def config(fake: FakeOpenAI, **kw) -> EndpointConfig:
    return EndpointConfig(**{"url": fake.url, "model": "tiny", "backoff": 0.0, **kw})


# --- the world prompt parser and the offline expander -------------------------------------------


def test_parser_reads_every_world_short_prompt() -> None:
    """Whatever the world writes as a short prompt parses back to its colors, shapes, motions,
    directions, trails, pillar and camera, with no word left over."""
    for seed in range(150):
        rng = np.random.default_rng(seed)
        spec = sample_scene(rng, 64, 64)
        prompt = short_prompt(spec, rng)
        parsed = parse_world_prompt(prompt)
        got = {o.color: o for o in parsed.objects}
        assert set(got) == {o.color for o in spec.objects}, prompt
        still = all(o.motion is Motion.STATIC for o in spec.objects)
        for obj in spec.objects:
            mention = got[obj.color]
            assert mention.shape is obj.shape, prompt
            assert mention.motion is (None if still else obj.motion), prompt
            assert mention.trail == obj.trail, prompt
            if obj.motion is Motion.LINEAR:
                assert mention.direction is obj.direction, prompt
        assert (parsed.camera or Camera.STATIC) is spec.camera, prompt
        assert parsed.has_pillar == (spec.occluder is not None), prompt
        assert parsed.floor is (spec.floor if isinstance(spec.floor, Color) else None), prompt
        assert parsed.unknown_words == [], prompt


def test_parser_reads_other_wording() -> None:
    parsed = parse_world_prompt(
        "A big red sphere rolls quickly towards the top left on a white background with a gray "
        "grid, while a tiny Blue cube crashes into a green pyramid; the camera zooms out"
    )
    red, blue, green = parsed.objects
    assert (red.color, red.shape, red.size) == (Color.RED, Shape.CIRCLE, Size.LARGE)
    assert (red.motion, red.direction, red.speed) == (Motion.LINEAR, Direction.UP_LEFT, Speed.FAST)
    assert (blue.color, blue.shape, blue.size) == (Color.BLUE, Shape.SQUARE, Size.SMALL)
    assert blue.motion is green.motion is Motion.COLLIDE
    assert green.shape is Shape.TRIANGLE
    assert parsed.camera is Camera.ZOOM_OUT
    assert (parsed.background_tone, parsed.background_accent) == (Tone.WHITE, Tone.GRAY)


def test_world_expander_keeps_what_was_said_and_fills_the_rest() -> None:
    expander = WorldExpander()
    out = expander.expand("a red ball bounces", seed=3)
    assert out.expanded and out.backend is ExpanderKind.WORLD and out.warnings == ()
    text = out.prompt.lower()
    assert "red" in text
    assert any(w in text for w in SHAPE_WORDS[Shape.CIRCLE])
    assert any(w in text for w in MOTION_WORDS[Motion.FALL])
    assert "floor" in text  # a falling object lands on a floor
    assert "background" in text or "backdrop" in text
    assert "camera" in text or "shot" in text or "view" in text
    # the filled-in scene: one red falling circle, a floor, a static camera
    spec = scene_from_prompt(parse_world_prompt("a red ball bounces"), np.random.default_rng(0))
    (obj,) = spec.objects
    assert (obj.color, obj.shape, obj.motion) == (Color.RED, Shape.CIRCLE, Motion.FALL)
    assert spec.floor is not None and spec.camera is Camera.STATIC


def test_colored_floor_is_read_and_kept_apart_from_the_objects() -> None:
    parsed = parse_world_prompt("a red ball bounces on a blue floor")
    (ball,) = parsed.objects
    assert (ball.color, ball.shape, ball.motion) == (Color.RED, Shape.CIRCLE, Motion.FALL)
    assert parsed.floor is Color.BLUE and parsed.unknown_words == []
    assert parse_world_prompt("a red ball bounces on a dark gray floor").floor is Tone.DARK_GRAY
    for seed in range(8):  # objects the prompt leaves uncolored never take the floor's color
        spec = scene_from_prompt(
            parse_world_prompt("a ball and a box fall on a blue floor"), np.random.default_rng(seed)
        )
        assert spec.floor is Color.BLUE
        assert Color.BLUE not in {o.color for o in spec.objects}
    out = WorldExpander().expand("a red ball bounces on a blue floor", seed=0)
    assert out.expanded and "blue floor" in out.prompt.lower() and out.warnings == ()
    out = WorldExpander().expand("a blue ball bounces on a blue floor", seed=0)
    assert not out.expanded and "both blue" in out.warnings[0]


def test_world_expander_is_deterministic_given_a_seed() -> None:
    expander = WorldExpander()
    prompt = "a green square slides left behind a pillar"
    first = expander.expand(prompt, seed=11).prompt
    assert expander.expand(prompt, seed=11).prompt == first
    others = {expander.expand(prompt, seed=s).prompt for s in range(12, 20)}
    assert len(others - {first}) >= 4  # the seed picks the fill-ins and the wording
    for text in others | {first}:
        assert "green" in text and ("pillar" in text or "column" in text)
        assert "left" in text or "leftward" in text


def test_world_expander_passes_through_what_it_cannot_read() -> None:
    expander = WorldExpander()
    out = expander.expand("a cat plays the piano", seed=0)
    assert not out.expanded and out.prompt == "a cat plays the piano"
    assert "no object" in out.warnings[0]
    out = expander.expand("a red ball and a red box", seed=0)
    assert not out.expanded and "both red" in out.warnings[0]
    out = expander.expand("a red ball bounces on the beach", seed=0)
    assert out.expanded and "beach" in out.warnings[0]


def test_cli_expand(capsys) -> None:
    assert main(["expand", "a yellow triangle falls", "--seed", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "world" and out["expanded"] is True
    assert "yellow" in out["prompt"] and out["original"] == "a yellow triangle falls"
    assert main(["expand", "x", "--backend", "llm"]) == 2  # no endpoint configured
    assert "KINEMA_LLM_URL" in capsys.readouterr().err


# --- the OpenAI-compatible client ---------------------------------------------------------------


def test_client_success_sends_model_messages_and_key(fake) -> None:
    fake.reply = lambda request: Reply(content="  hello there  ")
    client = ChatClient(config(fake, api_key="sk-test"))
    assert client.complete([{"role": "user", "content": "hi"}], seed=4) == "hello there"
    (request,) = fake.requests
    assert request["model"] == "tiny" and request["seed"] == 4 and request["stream"] is False
    assert request["messages"] == [{"role": "user", "content": "hi"}]
    assert fake.headers[0]["Authorization"] == "Bearer sk-test"


def test_client_timeout_retries_then_fails(fake) -> None:
    fake.reply = lambda request: Reply(delay=1.0)
    client = ChatClient(config(fake, timeout=0.2, retries=1))
    start = time.monotonic()
    with pytest.raises(EndpointTimeoutError, match=r"did not answer within 0\.2 s"):
        client.complete([{"role": "user", "content": "hi"}])
    assert time.monotonic() - start < 1.5
    assert len(fake.requests) == 2  # the first try and one retry


def test_client_retries_transient_status_then_succeeds(fake) -> None:
    replies = iter([Reply(status=503, body=b"busy", headers={"Retry-After": "0"}), Reply()])
    fake.reply = lambda request: next(replies)
    slept: list[float] = []
    client = ChatClient(config(fake, retries=2, backoff=0.01), sleep=slept.append)
    assert client.complete([{"role": "user", "content": "hi"}]) == "A detailed caption."
    assert len(fake.requests) == 2 and slept == [0.01]


@pytest.mark.parametrize(
    "body",
    [b"<html>not json</html>", b'{"choices": []}', b'{"choices": [{"message": {"content": ""}}]}'],
)
def test_client_malformed_reply_is_not_retried(fake, body) -> None:
    fake.reply = lambda request: Reply(body=body)
    with pytest.raises(MalformedReplyError, match="chat/completions"):
        ChatClient(config(fake, retries=3)).complete([{"role": "user", "content": "hi"}])
    assert len(fake.requests) == 1


def test_client_http_errors_name_status_and_hint(fake) -> None:
    fake.reply = lambda request: Reply(status=401, body=b'{"error": "bad key"}')
    with pytest.raises(EndpointHTTPError, match=r"401.*bad key.*API key") as info:
        ChatClient(config(fake, retries=3)).complete([{"role": "user", "content": "hi"}])
    assert info.value.status == 401 and len(fake.requests) == 1
    wrong_path = EndpointConfig(fake.url.removesuffix("/v1"), "tiny", backoff=0.0)
    with pytest.raises(EndpointHTTPError, match="404"):
        ChatClient(wrong_path).complete([{"role": "user", "content": "hi"}])


def test_client_unreachable(fake) -> None:
    url = fake.url
    fake.close()
    client = ChatClient(EndpointConfig(url, "tiny", retries=1, backoff=0.0))
    with pytest.raises(EndpointUnreachableError, match="cannot reach"):
        client.complete([{"role": "user", "content": "hi"}])


def test_endpoint_config_from_env() -> None:
    env = {"KINEMA_LLM_URL": "http://h:1/v1", "KINEMA_LLM_MODEL": "m", "KINEMA_LLM_API_KEY": "k"}
    c = EndpointConfig.from_env(environ=env)
    assert (c.url, c.model, c.api_key, c.completions_url) == (
        "http://h:1/v1",
        "m",
        "k",
        "http://h:1/v1/chat/completions",
    )
    vlm = EndpointConfig.from_env("KINEMA_VLM", environ={**env, "KINEMA_VLM_MODEL": "vision"})
    assert (vlm.url, vlm.model) == ("http://h:1/v1", "vision")  # falls back to KINEMA_LLM_*
    assert EndpointConfig.from_env(model="flag", environ=env).model == "flag"
    with pytest.raises(ValueError, match="KINEMA_VLM_URL"):
        EndpointConfig.from_env("KINEMA_VLM", environ={})
    with pytest.raises(ValueError, match="http"):
        EndpointConfig("ftp://h/v1", "m")
    # a bad number names the variable it came from, the fallback one included
    with pytest.raises(ValueError, match="KINEMA_LLM_TIMEOUT must be a number of seconds, got 'x'"):
        EndpointConfig.from_env("KINEMA_VLM", environ={**env, "KINEMA_LLM_TIMEOUT": "x"})
    with pytest.raises(ValueError, match=r"KINEMA_VLM_RETRIES must be a whole number, got '1\.5'"):
        EndpointConfig.from_env("KINEMA_VLM", environ={**env, "KINEMA_VLM_RETRIES": "1.5"})
    numbers = {"KINEMA_LLM_TIMEOUT": "5", "KINEMA_LLM_RETRIES": "0"}
    c = EndpointConfig.from_env(environ={**env, **numbers})
    assert (c.timeout, c.retries) == (5.0, 0)


# --- the LLM expander ---------------------------------------------------------------------------


def test_llm_expander_success(fake) -> None:
    fake.reply = lambda request: Reply(content='Caption: "A red ball falls onto a gray floor."')
    expander = load_expander("llm", url=fake.url, model="tiny", retries=0)
    assert isinstance(expander, LLMExpander)
    out = expander.expand("a red ball bounces", seed=9)
    assert out.expanded and out.prompt == "A red ball falls onto a gray floor."
    messages = fake.requests[0]["messages"]
    assert messages[0]["role"] == "system" and "caption" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "a red ball bounces"}
    assert len(messages) == 2 + 2 * 3  # system, three world examples, the prompt
    assert fake.requests[0]["seed"] == 9


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(delay=1.0), "did not answer within"),
        (Reply(body=b"garbage"), "did not answer with JSON"),
        (Reply(status=500, body=b"boom"), "HTTP 500"),
    ],
)
def test_llm_expander_falls_back_to_the_prompt(fake, reply, reason, caplog) -> None:
    fake.reply = lambda request: reply
    expander = LLMExpander(config(fake, timeout=0.2, retries=0))
    out = expander.expand("a red ball bounces")
    assert not out.expanded and out.prompt == "a red ball bounces"
    assert reason in out.warnings[0] and "using the prompt as typed" in out.warnings[0]
    assert reason in caplog.text  # logged as a warning too


# --- re-captioning ------------------------------------------------------------------------------


@pytest.fixture
def manifest(tmp_path) -> Path:
    return make_world(tmp_path / "world", n=5, sizes=[(64, 48)], num_frames=9, workers=1)


def _images(request: dict) -> list[np.ndarray]:
    parts = request["messages"][-1]["content"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert all(u.startswith("data:image/jpeg;base64,") for u in urls)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1])))) for u in urls]


def _caption_by_image(request: dict) -> Reply:
    """A caption that names the clip: the mean color of its first keyframe."""
    return Reply(content=f"clip with mean {_images(request)[0].mean():.3f}")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_keyframes_are_spread_and_shrunk(manifest) -> None:
    clip = manifest.parent / "clip_000000.mp4"
    frames = keyframes(clip, 3, max_side=32)
    assert frames.shape == (3, 24, 32, 3) and frames.dtype == np.uint8
    assert keyframes(clip, 50, max_side=384).shape == (9, 48, 64, 3)  # at most every frame


def test_recaption_sends_keyframes_and_writes_every_clip(fake, manifest, tmp_path) -> None:
    fake.reply = _caption_by_image
    out = tmp_path / "captioned" / "manifest.jsonl"
    job = CaptionJob(manifest, out, keyframes=3, max_side=32, workers=2)
    report = recaption_manifest(job, ChatClient(config(fake)))
    assert (report.total, report.already_done, report.captioned, report.failed) == (5, 0, 5, [])
    assert len(fake.requests) == 5
    for request in fake.requests:
        images = _images(request)
        assert len(images) == 3 and images[0].shape == (24, 32, 3)
        assert request["messages"][0]["role"] == "system"
    records = _lines(out)
    source = {r["path"]: r for r in _lines(manifest)}
    assert sorted(Path(r["path"]).name for r in records) == sorted(source)
    for r in records:
        assert (out.parent / r["path"]).resolve().is_file()  # paths resolve from the new folder
        assert r["caption"].startswith("clip with mean ")
        assert r["recaption"] == {"model": "tiny", "keyframes": 3}
        assert r["spec"] == source[Path(r["path"]).name]["spec"]  # the rest is kept
    # a rerun has nothing to do
    again = recaption_manifest(job, ChatClient(config(fake)))
    assert (again.already_done, again.captioned, len(fake.requests)) == (5, 0, 5)


def test_recaption_failures_are_reported_and_retried_next_run(fake, manifest, tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    fake.reply = lambda request: Reply(body=b"nope") if len(fake.requests) % 2 else Reply()
    job = CaptionJob(manifest, out, keyframes=1, workers=1)
    report = recaption_manifest(job, ChatClient(config(fake, retries=0)))
    assert report.captioned == 2 and len(report.failed) == 3
    assert all("did not answer with JSON" in error for _, error in report.failed)
    fake.reply = lambda request: Reply()
    report = recaption_manifest(job, ChatClient(config(fake, retries=0)))
    assert (report.already_done, report.captioned, report.failed) == (2, 3, [])
    assert len({r["path"] for r in _lines(out)}) == 5


def test_recaption_drops_a_torn_last_line(fake, manifest, tmp_path) -> None:
    out = tmp_path / "out.jsonl"
    job = CaptionJob(manifest, out, keyframes=1, workers=1, limit=2)
    assert recaption_manifest(job, ChatClient(config(fake))).captioned == 2
    with out.open("a") as f:
        f.write('{"path": "../world/clip_0000')  # killed mid-write
    job = CaptionJob(manifest, out, keyframes=1, workers=1)
    report = recaption_manifest(job, ChatClient(config(fake)))
    assert (report.already_done, report.captioned) == (2, 3)
    assert len(_lines(out)) == 5


def test_cli_caption_resumes_after_kill(fake, manifest, tmp_path) -> None:
    """Kill `kinema caption` mid-run; the rerun captions only the clips not yet written."""
    fake.reply = lambda request: Reply(content="slow caption", delay=0.4)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "kinema.cli", "caption", str(manifest), "--out", str(out)]
    command += ["--vlm-url", fake.url, "--vlm-model", "tiny", "--workers", "1", "--keyframes", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINEMA_")}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or len(_lines(out)) < 2):
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    done = len(_lines(out))
    assert 2 <= done < 5, "the first run should be killed part-way"
    fake.requests.clear()
    fake.reply = lambda request: Reply(content="fast caption")
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert f"{5 - done} captioned, {done} already done, 0 failed of 5 clips" in second.stdout
    assert len(fake.requests) == 5 - done
    records = _lines(out)
    assert len(records) == 5 and len({r["path"] for r in records}) == 5


def test_rate_limiter_spaces_requests() -> None:
    limiter = RateLimiter(per_minute=1200)  # one every 50 ms
    start = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert time.monotonic() - start >= 0.19
    unlimited = RateLimiter(None)
    start = time.monotonic()
    for _ in range(100):
        unlimited.wait()
    assert time.monotonic() - start < 0.05


def test_caption_job_checks_its_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="keyframes"):
        CaptionJob(tmp_path / "m.jsonl", tmp_path / "o.jsonl", keyframes=0)
    with pytest.raises(ValueError, match="differ"):
        CaptionJob(tmp_path / "m.jsonl", tmp_path / "m.jsonl")


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (64, 96)])
def test_layout_scene_renders_what_the_prompt_says(size) -> None:
    prompts = [
        "a red ball bounces on a blue floor",
        "a big purple disc paints a line as it moves down",
        "a yellow triangle moves right behind a dark gray pillar",
        "a red ball and a blue box collide, camera pans up",
    ]
    for seed, prompt in enumerate(prompts):
        parsed = parse_world_prompt(prompt)
        spec = layout_scene(parsed, np.random.default_rng(seed), *size)
        assert (spec.width, spec.height) == size and is_valid(spec)
        assert bench_video(render_scene(spec), spec).overall == 1.0, prompt
        for mention, obj in zip(parsed.objects, spec.objects, strict=True):
            assert (obj.color, obj.shape) == (mention.color, mention.shape), prompt
            assert mention.size in (None, obj.size) and mention.trail == obj.trail, prompt
    ball = layout_scene(parse_world_prompt(prompts[0]), np.random.default_rng(0), *size)
    assert ball.floor is Color.BLUE and ball.objects[0].motion is Motion.FALL
    pillar = layout_scene(parse_world_prompt(prompts[2]), np.random.default_rng(0), *size)
    assert pillar.occluder is not None and pillar.occluder.tone is Tone.DARK_GRAY
    assert pillar.objects[0].direction is Direction.RIGHT


def test_layout_scene_keeps_a_drawn_floor_apart_from_the_painted_colors() -> None:
    parsed = parse_world_prompt("a red ball bounces")
    for seed in range(40):  # the sampler draws floor colors for its own objects' colors
        spec = layout_scene(parsed, np.random.default_rng(seed))
        assert spec.floor is not None and spec.floor is not Color.RED


def test_layout_scene_says_what_cannot_be_shown() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(SceneError, match="no object"):
        layout_scene(parse_world_prompt("a cat plays the piano"), rng)
    with pytest.raises(SceneError, match="both blue"):
        layout_scene(parse_world_prompt("a blue ball bounces on a blue floor"), rng)
    # a fast object crossing a square frame against a pan cannot stay in view
    impossible = parse_world_prompt("a green box slides quickly left as the camera pans right")
    with pytest.raises(SceneError, match=r"camera pan right at 64x64.*tries"):
        layout_scene(impossible, rng)


def test_layout_scene_keeps_the_floor_the_prompt_names() -> None:
    parsed = parse_world_prompt("a red ball bounces on a gray floor")
    for seed in range(40):  # the sampler draws gray backgrounds too: the background gives way
        spec = layout_scene(parsed, np.random.default_rng(seed))
        assert spec.floor is Tone.GRAY and spec.background.tone is not Tone.GRAY
        assert spec.background.accent is not spec.background.tone
