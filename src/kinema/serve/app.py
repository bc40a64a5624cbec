"""The web studio: a Gradio page over `kinema.serve.studio.Studio`.

    kinema serve [--host 127.0.0.1] [--port 7860] [--model DIR] [--password ...]

Every generation mode, the inputs each one takes, size/aspect, duration, steps, guidance and
seed controls, a progress bar, the result with a download button, a gallery of this browser
session's recent results, and an "expand prompt" button. The widgets mirror the limits; the
server checks them again (`build_request`), so the HTTP API cannot get around them. Gradio runs
with analytics off, no share link, no server-side rendering and no MCP server; it binds to
localhost unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kinema.modes import OPTIONAL_INPUTS, REQUIRED_INPUTS, Mode
from kinema.serve.limits import LimitError
from kinema.serve.studio import ASPECTS, Studio, StudioForm, max_seconds

__all__ = ["MODE_LABELS", "ServeOptions", "build_app", "input_updates", "launch", "load_gradio"]

log = logging.getLogger(__name__)

MODE_LABELS: dict[Mode, str] = {
    Mode.T2V: "text → video",
    Mode.T2I: "text → image",
    Mode.I2V: "image → video",
    Mode.EXTEND_FORWARD: "extend forward",
    Mode.EXTEND_BACKWARD: "extend backward",
    Mode.CONNECT: "connect two videos",
    Mode.EDIT: "edit a video",
    Mode.LONG: "long video",
    Mode.LOOP: "seamless loop",
}
DURATION_LABELS = {
    Mode.EXTEND_FORWARD: "seconds to add after the video",
    Mode.EXTEND_BACKWARD: "seconds to add before the video",
    Mode.CONNECT: "seconds of transition",
}


def load_gradio():
    """Import Gradio with its telemetry and update check switched off."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    import gradio as gr

    return gr


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 7860
    password: str | None = None  # None: no login
    user: str = "kinema"


def _takes(mode: Mode, name: str) -> bool:
    return name in REQUIRED_INPUTS.get(mode, ()) or name in OPTIONAL_INPUTS.get(mode, ())


def input_updates(gr, studio: Studio, mode_value: str, seconds: float) -> list[Any]:
    """For a mode: which of the image/last image/video/second video/strength inputs show, the
    duration slider's label and range, and the guidance slider at the mode's default."""
    mode = Mode(mode_value)
    names = ("image", "last_image", "video", "video2")
    shown = [gr.update(visible=_takes(mode, n)) for n in names]
    shown.append(gr.update(visible=mode is Mode.EDIT))
    longest = max_seconds(mode, studio.info.fps, studio.limits)
    label = DURATION_LABELS.get(mode, "duration (seconds)")
    if mode is Mode.T2I:
        shown.append(gr.update(label="duration (one frame)", interactive=False))
    else:
        value = min(seconds or longest, longest)
        shown.append(gr.update(label=label, maximum=longest, value=value, interactive=True))
    shown.append(gr.update(value=studio.info.guidance_for(mode)))
    return shown


def _gallery_item(result) -> tuple[str, str]:
    caption = f"{result.request.mode.value} · seed {result.seed} · {result.request.prompt[:60]}"
    return str(result.path), caption


def build_app(studio: Studio):
    """The studio's Blocks (not launched)."""
    gr = load_gradio()
    info, limits = studio.info, studio.limits
    ttl = int(limits.output_ttl_s)
    with gr.Blocks(
        title="Kinema studio", analytics_enabled=False, delete_cache=(min(3600, ttl), ttl)
    ) as app:
        gr.Markdown(f"## Kinema studio\nmodel: `{info.name}` · {info.fps:g} fps")
        history = gr.State([])
        with gr.Row():
            with gr.Column(scale=1):
                mode = gr.Dropdown(
                    [(label, m.value) for m, label in MODE_LABELS.items()],
                    value=Mode.T2V.value,
                    label="mode",
                    elem_id="mode",
                )
                prompt = gr.Textbox(
                    label="prompt",
                    lines=3,
                    max_length=limits.max_prompt_chars,
                    placeholder="a red ball bounces on a gray floor",
                    elem_id="prompt",
                )
                with gr.Row():
                    expand = gr.Button("expand prompt", elem_id="expand")
                    generate = gr.Button("generate", variant="primary", elem_id="generate")
                auto_expand = gr.Checkbox(
                    label="expand the prompt before generating", value=False, elem_id="auto-expand"
                )
                negative = gr.Textbox(
                    label="negative prompt", max_length=limits.max_negative_chars, lines=1
                )
                image = gr.Image(label="first frame", type="filepath", visible=False)
                last_image = gr.Image(label="last frame (optional)", type="filepath", visible=False)
                video = gr.Video(label="video", sources=["upload"], visible=False)
                video2 = gr.Video(label="second video", sources=["upload"], visible=False)
                strength = gr.Slider(
                    0.05, 1.0, value=0.6, step=0.05, label="edit strength", visible=False
                )
                with gr.Accordion("settings", open=True):
                    aspect = gr.Dropdown(list(ASPECTS), value="1:1", label="aspect")
                    size = gr.Slider(
                        limits.min_size,
                        limits.max_size,
                        value=min(max(info.default_width, info.default_height), limits.max_size),
                        step=limits.size_multiple,
                        label="size (longer side, pixels)",
                    )
                    longest = max_seconds(Mode.T2V, info.fps, limits)
                    seconds = gr.Slider(
                        1 / info.fps,
                        longest,
                        value=min(info.default_seconds, longest),
                        step=1 / info.fps,
                        label="duration (seconds)",
                    )
                    steps = gr.Slider(
                        1, limits.max_steps, value=info.default_steps, step=1, label="steps"
                    )
                    guidance = gr.Slider(
                        0,
                        limits.max_guidance,
                        value=info.default_guidance,
                        step=0.5,
                        label="guidance",
                    )
                    seed = gr.Number(value=-1, precision=0, label="seed (-1: random)")
            with gr.Column(scale=1):
                result_video = gr.Video(
                    label="result", buttons=["download"], loop=True, elem_id="result-video"
                )
                result_image = gr.Image(
                    label="result", buttons=["download"], visible=False, elem_id="result-image"
                )
                used_seed = gr.Textbox(label="seed used", interactive=False, elem_id="used-seed")
                details = gr.Markdown(elem_id="details")
                gallery = gr.Gallery(
                    label="recent results",
                    columns=4,
                    height=240,
                    object_fit="contain",
                    elem_id="gallery",
                    interactive=False,
                )

        mode.change(
            lambda m, s: input_updates(gr, studio, m, s),
            inputs=[mode, seconds],
            outputs=[image, last_image, video, video2, strength, seconds, guidance],
            api_visibility="private",
        )

        def on_expand(text: str, seed_value: float):
            try:
                expansion = studio.expand(text, -1 if seed_value is None else int(seed_value))
            except LimitError as e:
                raise gr.Error(str(e)) from None
            for warning in expansion.warnings:
                gr.Warning(warning)
            return expansion.prompt

        expand.click(
            on_expand, inputs=[prompt, seed], outputs=prompt, api_name="expand", concurrency_limit=4
        )

        # Gradio finds the progress bar by this default value, so it has to be a call here.
        def on_generate(*values, progress=gr.Progress()):  # noqa: B008
            *fields, past = values
            names = ("mode", "prompt", "negative_prompt", "aspect", "size", "seconds", "steps")
            names += ("guidance", "seed", "strength", "expand_prompt")
            names += ("image", "last_image", "video", "video2")
            form = StudioForm(**dict(zip(names, fields, strict=True)))
            progress(0, desc="starting")

            def report(done: int, total: int) -> None:
                progress((done, total), desc="sampling", unit="steps")

            try:
                result = studio.generate(form, report)
            except LimitError as e:
                raise gr.Error(str(e)) from None
            except ValueError as e:  # the model refused a value the limits let through
                raise gr.Error(f"the model cannot make this: {e}") from None
            except Exception as e:
                log.exception("generation failed")
                raise gr.Error(f"generation failed: {type(e).__name__}: {e}") from None
            past = [_gallery_item(result), *past][: limits.gallery_size]
            past = [item for item in past if Path(item[0]).exists()]  # cleaned-up files go
            req = result.request
            text = (
                f"{MODE_LABELS[req.mode]} · {req.width}x{req.height} · {result.num_frames} frames"
                f" at {result.fps:g} fps · {req.steps} steps · guidance {req.guidance:g} · "
                f"{result.seconds:.1f} s"
            )
            if result.expansion is not None:
                for warning in result.expansion.warnings:
                    gr.Warning(warning)
                text += f"\n\nprompt used: {req.prompt}"
            shown_video = None if result.is_image else str(result.path)
            return (
                gr.update(value=shown_video, visible=not result.is_image),
                gr.update(
                    value=str(result.path) if result.is_image else None, visible=result.is_image
                ),
                str(result.seed),
                text,
                past,
                past,
            )

        form = [mode, prompt, negative, aspect, size, seconds, steps, guidance, seed, strength]
        form.append(auto_expand)
        generate.click(
            on_generate,
            inputs=[*form, image, last_image, video, video2, history],
            outputs=[result_video, result_image, used_seed, details, gallery, history],
            api_name="generate",
            concurrency_limit=1,
            concurrency_id="generate",
        )
    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def launch(studio: Studio, options: ServeOptions, block: bool = True):
    """Serve the studio; returns (app, local URL). `block=False` returns once it is listening."""
    if not options.password and not _is_loopback(options.host):
        log.warning(
            "serving on %s without a password: anyone who can reach this host can generate; "
            "pass --password (or set KINEMA_STUDIO_PASSWORD)",
            options.host,
        )
    app = build_app(studio)
    app.queue(max_size=studio.limits.max_queue, default_concurrency_limit=1)
    try:
        _, url, _ = app.launch(
            server_name=options.host,
            server_port=options.port,
            share=False,
            auth=(options.user, options.password) if options.password else None,
            max_file_size=studio.limits.max_upload_bytes,
            allowed_paths=[str(studio.outputs.directory)],
            ssr_mode=False,
            mcp_server=False,
            pwa=False,
            inbrowser=False,
            show_error=True,
            quiet=True,
            prevent_thread_lock=not block,
        )
    except OSError as e:  # Gradio's advice names its own settings, not kinema's flags
        if e.filename is not None:
            raise
        raise OSError(
            f"cannot serve on {options.host}:{options.port}: the port is in use (or the host is "
            "not this machine's); pass another --port (or --host)"
        ) from e
    return app, url
