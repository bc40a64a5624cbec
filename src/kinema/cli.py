"""The `kinema` command.

kinema demo                       generate the default prompt with the shipped model (3 sizes)
kinema world make --n N --out DIR make a data set of world clips with a manifest
kinema world suite --out PATH     regenerate WorldBench's public prompt suite
kinema world render PROMPT -o OUT render a prompt's scene with the world (no model)
kinema bench world --json OUT     WorldBench: generate the prompt suite (or --manifest M) and score
kinema bench modes --json OUT     every generation mode on world clips: given PSNR, seams
kinema bench compare A B          B minus A of two WorldBench reports, paired 95% intervals
kinema generate PROMPT -o OUT     text (+ image/video) to video: t2v, i2v, extend, long, ...
kinema video info PATH            probe a video file
kinema vae train|eval             train the video VAE; encode→decode PSNR/SSIM of videos
kinema vae replace --vae V        a model folder with V, a decoder fine-tune, as its VAE
kinema train CONFIG.yaml          train the DiT or the VAE (also: train plot, train export)
kinema data scan DIR --out M      probe videos/images (+ NAME.txt captions) into a manifest
kinema cache M --vae V --out C    precompute latents and text tokens for training
kinema serve [--model DIR]        the web studio (Gradio) on 127.0.0.1:7860
kinema expand "PROMPT"            expand a short prompt into a detailed caption
kinema caption M --out M2         re-caption a manifest's clips with a vision-language endpoint
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kinema import __version__
from kinema.reports import check_writable, write_report


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):  # no command, or a group without its subcommand
        getattr(args, "group", parser).print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except Exception as e:
        if not isinstance(e, _user_errors()):
            raise
        print(f"kinema: error: {_error_line(e)}", file=sys.stderr)
        return 2


def _error_line(e: BaseException) -> str:
    """The error as one line; an OSError as its path and the problem ("out: is a directory")."""
    if isinstance(e, OSError) and e.filename is not None:
        # a move (os.replace) names its source and its target: the target is the user's path
        path = e.filename2 if e.filename2 is not None else e.filename
        reason = e.strerror or str(e)
        return f"{path}: {reason[:1].lower()}{reason[1:]}"
    return str(e)


# errors that bad input, a bad path or a missing asset cause: one line on stderr, no traceback
_USER_ERRORS = {
    "kinema.video": "VideoError",
    "kinema.assets": "AssetUnavailableError",
    "kinema.text": "TextEncoderUnavailableError",
}


def _user_errors() -> tuple[type[BaseException], ...]:
    # a module not imported yet cannot have raised its error, so nothing is imported here
    loaded = [getattr(sys.modules.get(m), n, None) for m, n in _USER_ERRORS.items()]
    return (ValueError, OSError, *(e for e in loaded if e is not None))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kinema", description="Kinema: text-to-video.")
    parser.add_argument("--version", action="version", version=f"kinema {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_demo(commands)
    _add_world(commands)
    _add_bench(commands)
    _add_generate(commands)
    _add_video(commands)
    _add_vae(commands)
    _add_train(commands)
    _add_serve(commands)
    _add_expand(commands)
    _add_caption(commands)
    _add_data(commands)
    _add_cache(commands)
    return parser


def _group(commands, name: str, help: str):
    """A command group (`kinema bench ...`); given alone, it prints its own help."""
    p = commands.add_parser(name, help=help, description=help)
    p.set_defaults(group=p)
    return p.add_subparsers(title=f"{name} commands", metavar="COMMAND")


def _command(group, name: str, help: str, run: Callable[[argparse.Namespace], int]):
    # argparse %-formats help strings ("95% intervals" would break --help), not descriptions
    p = group.add_parser(name, help=help.replace("%", "%%"), description=help)
    p.set_defaults(run=run)
    return p


# --- demo --------------------------------------------------------------------------------------


DEMO_PROMPT = "a red ball bounces on a blue floor"
DEMO_SIZES = ((64, 64), (96, 64), (64, 96))  # square, landscape, portrait


def _add_demo(commands) -> None:
    p = _command(commands, "demo", "generate the default prompt with the shipped model", run_demo)
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--prompt", default=DEMO_PROMPT, help=f"default: {DEMO_PROMPT!r}")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--seed", type=int, default=0, help="one seed for every clip (-1: random)")


def run_demo(args: argparse.Namespace) -> int:
    """One clip per aspect ratio, written as mp4 with a JSON sidecar each. Without a model
    folder (none given and models/default has no model_index.json), the world renders the
    prompt's scene instead."""
    from kinema.hub import DEFAULT_MODEL_DIR, INDEX_NAME
    from kinema.pipeline import Pipeline, resolve_seed, save_output

    out = check_writable(args.out, "--out", folder=True)
    seed, _ = resolve_seed(args.seed, None)  # -1: one random seed, printed, for every clip
    if args.model is None and not (DEFAULT_MODEL_DIR / INDEX_NAME).is_file():
        print(
            f"no model_index.json in {DEFAULT_MODEL_DIR}: Kinema's world renders the prompt's "
            "scene instead (what a model trained on the world learns to generate)"
        )
        return _world_demo(args.prompt, out, seed)
    pipe = Pipeline.from_pretrained(args.model)
    print(f"model: {pipe.model_dir}\nprompt: {args.prompt!r}, seed {seed}")
    for width, height in DEMO_SIZES:
        clip = pipe(args.prompt, width=width, height=height, seed=seed)
        path, _ = save_output(clip, out / f"demo_{width}x{height}.mp4")
        seconds = clip.timings["total"]
        print(f"{width:>3}x{height:<3} {clip.num_frames} frames  {seconds:5.1f} s  {path}")
    return 0


def _world_demo(prompt: str, out: Path, seed: int) -> int:
    """Render the prompt's scene with the world at each demo size and score it with WorldBench."""
    print(f"prompt: {prompt!r}, seed {seed}")
    for width, height in DEMO_SIZES:
        path, overall = _render_prompt(
            prompt, out / f"demo_{width}x{height}.mp4", width, height, 33, 8.0, seed
        )
        print(f"{width:>3}x{height:<3} WorldBench {overall:.2f}  {path}")
    return 0


# --- world -------------------------------------------------------------------------------------


def _add_world(commands) -> None:
    world = _group(commands, "world", "Kinema's procedural world")
    p = _command(world, "make", "render world clips and a manifest.jsonl", run_world_make)
    p.add_argument("--n", type=int, required=True, help="number of clips")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=None, help="clip width (default 64)")
    p.add_argument("--height", type=int, default=None, help="clip height (default 64)")
    p.add_argument("--sizes", default=None, help="cycle through sizes, e.g. 64x64,96x64,64x96")
    p.add_argument("--frames", type=int, default=33, help="frames per clip (default 33)")
    p.add_argument("--fps", type=_fps, default=8.0, help="frames per second (default 8)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default or 0: one per core, at most 8)",
    )
    p.add_argument(
        "--exclude-heldout",
        action="store_true",
        help="leave out WorldBench's held-out (color, shape) pairs (for training sets)",
    )
    p.add_argument(
        "--cameras",
        default=None,
        help="only these camera moves, cycled, e.g. 'pan left,pan right' (default: drawn)",
    )
    p = _command(world, "render", "render a prompt's scene with the world", run_world_render)
    p.add_argument("prompt", help='a prompt in the world\'s words ("a red ball bounces")')
    p.add_argument("-o", "--out", required=True, help="output .mp4 (a .json sidecar beside it)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--frames", type=int, default=33, help="frames (default 33)")
    p.add_argument("--fps", type=_fps, default=8.0, help="frames per second (default 8)")
    p.add_argument("--seed", type=int, default=0, help="picks what the prompt leaves open")
    p = _command(world, "suite", "regenerate WorldBench's prompt suites", run_world_suite)
    p.add_argument("--out", required=True, help="path of the suite .jsonl to write")
    p.add_argument(
        "--heldout", action="store_true", help="the held-out suite (unseen attribute pairs)"
    )


def _fps(value: str) -> float:
    """A --fps value: what the video writer takes, checked as the command line is read."""
    from kinema.video import check_fps

    try:
        return check_fps(float(value))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def run_world_make(args: argparse.Namespace) -> int:
    from kinema.world.dataset import make_world, parse_camera, parse_size

    check_writable(args.out, "--out", folder=True)
    if args.sizes is not None and (args.width is not None or args.height is not None):
        raise ValueError("give either --sizes or --width/--height, not both")
    if args.sizes is not None:
        sizes = [parse_size(s) for s in args.sizes.split(",")]
    else:
        width = 64 if args.width is None else args.width
        height = 64 if args.height is None else args.height
        sizes = [parse_size(f"{width}x{height}")]
    cameras = [] if args.cameras is None else [parse_camera(c) for c in args.cameras.split(",")]
    manifest = make_world(
        args.out,
        args.n,
        args.seed,
        sizes,
        args.frames,
        args.fps,
        workers=args.workers,
        exclude_heldout=args.exclude_heldout,
        cameras=cameras,
    )
    print(manifest)
    return 0


# the video is read back and scored: a GIF's palette and centisecond frame times would lower
# the score of the very scene it shows (0.8 where the .mp4 scores 1.0)
RENDER_SUFFIXES = (".mp4",)


def run_world_render(args: argparse.Namespace) -> int:
    out = check_writable(args.out, "-o/--out", suffixes=RENDER_SUFFIXES)
    path, overall = _render_prompt(
        args.prompt, out, args.width, args.height, args.frames, args.fps, args.seed
    )
    print(f"{path}  (WorldBench {overall:.2f} against the prompt's scene)")
    return 0


def _render_prompt(
    prompt: str, out: Path, width: int, height: int, frames: int, fps: float, seed: int
) -> tuple[Path, float]:
    """Lay out, render and write the world's scene for `prompt`, with a JSON sidecar (the spec,
    its caption and its WorldBench score read back from the file); returns (mp4, score)."""
    import numpy as np

    from kinema.language.expand import layout_scene
    from kinema.language.world_parse import parse_world_prompt
    from kinema.video import read_video, write_video
    from kinema.world.bench import bench_video
    from kinema.world.captions import detailed_caption
    from kinema.world.render import render_scene

    parsed = parse_world_prompt(prompt)
    if parsed.unknown_words:
        print(f"not in the world's vocabulary, left out: {', '.join(parsed.unknown_words)}")
    rng = np.random.default_rng(seed)
    spec = layout_scene(parsed, rng, width, height, frames, fps)
    out.parent.mkdir(parents=True, exist_ok=True)
    path = write_video(out, render_scene(spec), fps=fps)
    overall = bench_video(read_video(path).frames, spec).overall
    record = {
        "prompt": prompt,
        "seed": seed,
        "source": "world",  # rendered by Kinema's procedural world, not generated by a model
        "caption": detailed_caption(spec, rng),
        "worldbench": overall,
        "spec": spec.to_dict(),
        "output": str(path),
    }
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return path, overall


def run_world_suite(args: argparse.Namespace) -> int:
    from kinema.world.suite import build_heldout_suite, build_suite, write_suite

    check_writable(args.out, "--out")
    entries = build_heldout_suite() if args.heldout else build_suite()
    write_suite(args.out, entries)
    print(f"{len(entries)} prompts → {args.out}")
    return 0


# --- bench -------------------------------------------------------------------------------------


# what only generating the suite reads (bench world without --manifest)
SUITE_GENERATION = ("model", "suite", "limit", "out", "text", "mode", "steps", "guidance")
SUITE_GENERATION += ("solver", "camera_noise", "held_start", "image_first")


def _add_bench(commands) -> None:
    bench = _group(commands, "bench", "benchmarks")
    p = _command(bench, "world", "WorldBench: score videos against their specs", run_bench_world)
    p.add_argument("--manifest", help="manifest.jsonl of videos with specs (e.g. from world make)")
    p.add_argument(
        "--model", help="without --manifest: generate the suite with this model (default: shipped)"
    )
    p.add_argument("--suite", choices=["suite", "heldout"], default="suite", help="prompt suite")
    p.add_argument("--limit", type=int, default=None, help="only the first N suite prompts")
    p.add_argument("--out", default=None, help="folder for generated clips (outputs/bench-SUITE)")
    p.add_argument("--text", choices=["prompt", "caption"], default="prompt", help="text to use")
    p.add_argument(
        "--mode",
        choices=["t2v", "i2v", "extend"],
        default="t2v",
        help="i2v: each clip starts from its scene's first frame, rendered; extend: extends its "
        "first frames, as many as the model's extend context (default: t2v)",
    )
    p.add_argument("--steps", type=int, default=None, help="sampling steps (model default)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (model default)")
    _add_solver(p)
    _add_camera_noise(p)
    _add_held_start(p)
    p.add_argument(
        "--image-first",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="frame 0 as an image first, then the clip from it (default: the model's)",
    )
    _add_json_out(p)
    p.add_argument(
        "--shuffle-specs", action="store_true", help="score each video against another's spec"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the spec shuffle")
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(generation_defaults={d: p.get_default(d) for d in SUITE_GENERATION})
    _add_bench_modes(bench)
    _add_bench_compare(bench)


def _add_bench_compare(bench) -> None:
    p = _command(
        bench,
        "compare",
        "B minus A of two WorldBench reports of the same prompts, with paired 95% intervals",
        run_bench_compare,
    )
    p.add_argument("a", help="report A (kinema bench world --json), .json or .json.gz")
    p.add_argument("b", help="report B, of the same suite at the same seeds")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips of each")
    p.add_argument("--draws", type=int, default=10_000, help="bootstrap draws (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    p.add_argument("--json", dest="json_out", default=None, help="also write the comparison")


def run_bench_compare(args: argparse.Namespace) -> int:
    from kinema.bench.compare import compare_reports, format_comparison
    from kinema.reports import read_report, write_report

    if args.json_out is not None:
        check_writable(args.json_out, "--json")
    result = compare_reports(
        read_report(args.a), read_report(args.b), args.limit, args.draws, args.seed
    )
    print(format_comparison(result, args.a, args.b))
    if args.json_out is not None:
        write_report(args.json_out, {"a": args.a, "b": args.b, **result})
        print(f"report: {args.json_out}")
    return 0


def _add_json_out(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        dest="json_out",
        required=True,
        help="where to write the report (a name ending in .gz: gzip-compressed)",
    )


def _add_camera_noise(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--camera-noise",
        type=float,
        default=None,
        help="share of the starting noise moved as the prompt's camera moves (a pan or zoom), "
        "in [0, 1] (0: plain noise; default: the model's)",
    )


def _add_held_start(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--held-start",
        type=float,
        default=None,
        help="windows continuing a video (extend, connect, loop, long) start sampling at this "
        "noise level, in (0, 1], from it held over the new frames and moved on as it moves "
        "(1: plain noise; default: the model's)",
    )


SOLVERS_HELP = "euler, heun or stochastic (default: the model's)"  # kinema.sampling.Solver


def _solver(value: str) -> str:
    """A --solver value, checked when given (building the parser does not import torch)."""
    from kinema.sampling import Solver

    try:
        return Solver.parse(value).value
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_solver(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solver", type=_solver, default=None, help=SOLVERS_HELP)


def run_bench_world(args: argparse.Namespace) -> int:
    from kinema.world.dataset import read_manifest
    from kinema.world.evaluate import evaluate_manifest

    check_writable(args.json_out, "--json")
    given = [d for d, v in args.generation_defaults.items() if getattr(args, d) != v]
    if args.manifest is not None and given:  # flags that would be ignored are refused
        flags = ", ".join("--" + d.replace("_", "-") for d in given)
        raise ValueError(
            f"--manifest scores the manifest's existing clips, so {flags} (which generate the "
            "suite) would be ignored: drop them, or drop --manifest to generate"
        )
    manifest = args.manifest if args.manifest is not None else _generate_suite(args)
    records = read_manifest(manifest)
    shuffle = args.seed if args.shuffle_specs else None
    report = evaluate_manifest(records, shuffle_seed=shuffle, workers=args.workers)
    write_report(args.json_out, report)
    print(format_report(report))
    print(f"report: {args.json_out}")
    return 0


def _generate_suite(args: argparse.Namespace) -> Path:
    from kinema.pipeline import Pipeline
    from kinema.world.generate import generate_suite, pipeline_generator
    from kinema.world.suite import load_suite

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    suffix = "" if args.mode == "t2v" else f"-{args.mode}"
    out = check_writable(args.out or f"outputs/bench-{args.suite}{suffix}", "--out", folder=True)
    entries = load_suite(args.suite)[: args.limit]
    pipe = Pipeline.from_pretrained(args.model)
    generate = pipeline_generator(
        pipe,
        args.steps,
        args.guidance,
        args.image_first,
        args.solver,
        args.camera_noise,
        args.held_start,
    )
    # what makes the clips: the model's files and the sampling settings in effect (its defaults
    # with the flags given applied), not where the model folder happens to be
    overrides = {
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "image_first": args.image_first,
        "solver": args.solver,
        "camera_noise": args.camera_noise,
        "held_start": args.held_start,
    }
    defaults = dataclasses.asdict(pipe.index.defaults)
    defaults.update({k: v for k, v in overrides.items() if v is not None})
    given_frames = {"t2v": 0, "i2v": 1, "extend": pipe.geometry().context_before}[args.mode]
    settings = {
        "suite": args.suite,
        "files": pipe.index.files,
        "text_encoder": [pipe.index.text_encoder, pipe.index.text_max_length],
        "sampling": defaults,
    }
    return generate_suite(
        generate, entries, out, text=args.text, settings=settings, given_frames=given_frames
    )


def format_report(report: dict) -> str:
    rows = [f"{'category':<12}{'pass rate':>10}{'checks':>8}"]
    for name, rate in report["categories"].items():
        rows.append(f"{name:<12}{rate:>10.3f}{report['checks_per_category'][name]:>8}")
    rows.append(f"{'overall':<12}{report['overall']:>10.3f}{report['n']:>8} clips")
    if report.get("palette_share") is not None:
        rows.append(f"palette share (pixels in the world's colours): {report['palette_share']:.3f}")
    if report.get("unreadable"):
        rows.append(f"unreadable videos: {report['unreadable']}")
    return "\n".join(rows)


# --- bench modes and generate -------------------------------------------------------------------


def _add_bench_modes(bench) -> None:
    p = _command(bench, "modes", "every generation mode on world clips", run_bench_modes)
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--random-model", action="store_true", help="a seeded random debug model")
    p.add_argument("--vae", default=None, help="with --random-model: a trained VAE folder")
    _add_json_out(p)
    p.add_argument("--clips", type=int, default=2, help="world clips per mode (default 2)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (model default)")
    p.add_argument("--long-seconds", type=float, default=60.0, help="long video (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--given-guidance-min-t",
        type=float,
        default=None,
        help="windows given frames guide only at steps from t >= this (default: the model's)",
    )
    _add_held_start(p)
    p.add_argument(
        "--modes",
        default=None,
        help="run only these modes, comma-separated, e.g. 'extend-forward,connect' (default: "
        "every mode: t2v, t2i, i2v, extend-forward, extend-backward, connect, loop, edit, long)",
    )


def run_bench_modes(args: argparse.Namespace) -> int:
    from kinema.bench.modes import BENCHED, BenchConfig, main_bench
    from kinema.modes import Mode

    modes = BENCHED  # an unknown name fails in Mode.parse, none at all in BenchConfig
    if args.modes is not None:
        modes = tuple(Mode.parse(name.strip()) for name in args.modes.split(",") if name.strip())
    config = BenchConfig(
        args.clips,
        args.seed,
        args.steps,
        args.long_seconds,
        given_guidance_min_t=args.given_guidance_min_t,
        held_start=args.held_start,
        modes=modes,
    )
    main_bench(args.model, args.random_model, args.json_out, config, args.vae)
    return 0


def _add_generate(commands) -> None:
    from kinema.modes import Mode

    p = _command(commands, "generate", "generate a video or image from text", run_generate)
    p.add_argument("prompt")
    p.add_argument("-o", "--out", required=True, help="output .mp4, .gif or .png (+ NAME.json)")
    p.add_argument("--mode", default="t2v", choices=[m.value for m in Mode])
    p.add_argument("--negative-prompt", default=None, help="default: the model's")
    for name in ("image", "last-image", "video", "video2"):
        p.add_argument(f"--{name}", default=None, metavar="PATH")
    p.add_argument("--strength", type=float, default=None, help="edit strength (default 0.6)")
    for name in ("width", "height", "steps"):
        p.add_argument(f"--{name}", type=int, default=None, help="default: the model's")
    p.add_argument("--frames", type=int, default=None, help="frames the mode makes (per mode)")
    p.add_argument("--fps", type=float, default=None, help="default: the model's")
    p.add_argument("--guidance", type=float, default=None, help="default: the model's")
    p.add_argument(
        "--given-guidance",
        type=float,
        default=None,
        help="guidance of windows that continue frames (long's chained windows); default: "
        "--guidance when given, else the model's",
    )
    p.add_argument(
        "--given-guidance-min-t",
        type=float,
        default=None,
        help="those windows guide only at steps from t >= this, in [0, 1] (0: every step); "
        "default: the model's",
    )
    _add_solver(p)
    _add_camera_noise(p)
    _add_held_start(p)
    p.add_argument("--seed", type=int, default=-1, help="-1: random (printed)")
    p.add_argument("--context-latents", type=int, default=2, help="context of extend/long/loop")
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument(
        "--image-first",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="t2v, long, loop: make frame 0 as an image, then the clip from it (default: the "
        "model's)",
    )
    p.add_argument(
        "--blend-seams",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="correct generated frames towards the given frames they join (default: on)",
    )
    p.add_argument(
        "--refine-steps",
        type=int,
        default=None,
        help="decoder steps fitting given latents to the given frames (default: 20 where a window "
        "is given one image at its start, as in i2v; 0 elsewhere)",
    )
    p.add_argument(
        "--expand",
        choices=["world", "llm"],
        default=None,
        help="expand the prompt first: the offline world expander, or an LLM (KINEMA_LLM_*)",
    )


def run_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kinema.language.expand import load_expander
    from kinema.pipeline import Pipeline, check_output_path, resolve_seed, save_output

    check_output_path(args.out)  # before any work: a bad path never costs a generation
    pipe = Pipeline.from_pretrained(args.model)
    seed, _ = resolve_seed(args.seed, None)
    print(f"seed: {seed}", flush=True)
    bars: list[tqdm] = []

    def progress(step) -> None:
        if not bars:
            bars.append(tqdm(total=step.total_steps, desc=args.mode, unit="step", file=sys.stderr))
        bars[0].update(1)

    inputs = {"image": args.image, "last_image": args.last_image, "video": args.video}
    inputs["video2"] = args.video2
    try:
        out = pipe(
            args.prompt,
            args.negative_prompt,
            mode=args.mode,
            strength=args.strength,
            width=args.width,
            height=args.height,
            num_frames=args.frames,
            fps=args.fps,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            given_guidance_scale=args.given_guidance,
            given_guidance_min_t=args.given_guidance_min_t,
            solver=args.solver,
            seed=seed,
            context_latents=args.context_latents,
            callback=progress,
            expand_prompt=False if args.expand is None else load_expander(args.expand),
            image_first=args.image_first,
            blend_seams=args.blend_seams,
            refine_steps=args.refine_steps,
            camera_noise=args.camera_noise,
            held_start=args.held_start,
            **inputs,
        )
    finally:
        for bar in bars:
            bar.close()
    if out.settings.original_prompt is not None:
        print(f"expanded prompt: {out.settings.prompt}")
    written, sidecar = save_output(out, args.out, inputs={k: v for k, v in inputs.items() if v})
    print(f"{written} ({out.num_frames} frames, {out.timings['total']:.1f} s)\nsidecar: {sidecar}")
    return 0


# --- video -------------------------------------------------------------------------------------


def _add_video(commands) -> None:
    video = _group(commands, "video", "video files")
    p = _command(video, "info", "print a video's size, frames, fps and codec", run_video_info)
    p.add_argument("path")


def run_video_info(args: argparse.Namespace) -> int:
    from kinema.video import probe_video

    print(json.dumps(probe_video(args.path).__dict__))  # a VideoError: one line, exit 2
    return 0


# --- vae ---------------------------------------------------------------------------------------


def _add_vae(commands) -> None:
    vae = _group(commands, "vae", "the video compression network")
    p = _command(vae, "train", "train the causal video VAE (resumes from OUT)", run_vae_train)
    p.add_argument("--preset", default="small", help="VAE preset (default: small)")
    p.add_argument("--out", default="runs/vae", help="run folder (default: runs/vae)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a VAETrainConfig field, e.g. --set lr=3e-4 (repeatable)",
    )
    p = _command(vae, "eval", "encode→decode PSNR/SSIM and speed on videos", run_vae_eval)
    p.add_argument("videos", nargs="*", help="video files")
    p.add_argument(
        "--held-out",
        action="store_true",
        help="also evaluate the held-out real footage (never used in training)",
    )
    p.add_argument("--model", default=None, help="VAE folder (default: the shipped model's)")
    _add_json_out(p)
    p.add_argument("--short-side", type=int, default=256, help="resize short side (default 256)")
    p.add_argument("--max-frames", type=int, default=33, help="frames per video (default 33)")
    p.add_argument(
        "--still",
        action="store_true",
        help="hold each video's first frame for its length: the decoder's flicker on still shots",
    )
    p.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="fit the encoder's latents to each clip through the decoder by N Adam steps before "
        "decoding (default 0: one pass, the native setting)",
    )

    p = _command(
        vae,
        "replace",
        "copy a model folder with a decoder fine-tune of its VAE in place of the VAE",
        run_vae_replace,
    )
    p.add_argument(
        "--vae", required=True, help="VAE folder: the model's VAE with only its decoder trained"
    )
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument("--out", required=True, help="model folder to write")


def run_vae_train(args: argparse.Namespace) -> int:
    from kinema.compression.train import VAETrainConfig, VAETrainer, apply_overrides

    config = VAETrainConfig(preset=args.preset, out_dir=args.out)
    if args.steps is not None:
        config.steps = args.steps
    config = apply_overrides(config, args.overrides)
    exported = VAETrainer(config).run()
    print(f"VAE: {exported}")
    return 0


def run_vae_replace(args: argparse.Namespace) -> int:
    from kinema.hub import DEFAULT_MODEL_DIR, replace_vae

    out = replace_vae(args.model or DEFAULT_MODEL_DIR, args.vae, args.out)
    print(f"model: {out}")
    if (out / "README.md").is_file():
        print(f"{out / 'README.md'}: copied as it was; its VAE section describes the old VAE")
    return 0


def run_vae_eval(args: argparse.Namespace) -> int:
    from kinema.compression.evaluate import (
        evaluate_clips,
        hold_still,
        load_vae,
        read_clips,
        vae_dir,
    )
    from kinema.text import sha256_file

    if not args.videos and not args.held_out:
        raise ValueError("give VIDEO files to evaluate, --held-out, or both")
    if args.refine_steps < 0:
        raise ValueError(f"--refine-steps must be >= 0, got {args.refine_steps}")
    if args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    check_writable(args.json_out, "--json")
    model = vae_dir(args.model)
    vae = load_vae(model)
    least = vae.config.space_compression  # one latent pixel
    if args.short_side < least:
        raise ValueError(
            f"--short-side must be >= {least} (a latent pixel of this VAE), got {args.short_side}"
        )
    clips = read_clips(args.videos, args.max_frames)
    if args.held_out:
        from kinema.compression.data import evaluation_clips

        clips.update({f"held-out/{k}": v for k, v in evaluation_clips().items()})
    if args.still:
        clips = hold_still(clips)
    report = evaluate_clips(
        vae, clips, args.short_side, args.max_frames, args.refine_steps, progress=True
    )
    report["settings"]["still"] = args.still
    report["model"] = {"path": str(model), "sha256": sha256_file(model / "model.safetensors")}
    write_report(args.json_out, report)
    print(
        f"{'video':<40}{'frames':>7}{'size':>10}{'PSNR':>8}{'SSIM':>7}{'enc fps':>9}{'dec fps':>9}"
    )
    for v in report["videos"]:
        size = f"{v['width']}x{v['height']}"
        print(
            f"{Path(v['name']).name:<40}{v['frames']:>7}{size:>10}{v['psnr']:>8.2f}"
            f"{v['ssim']:>7.3f}{v['encode_fps']:>9.1f}{v['decode_fps']:>9.1f}"
        )
    m = report["mean"]
    print(
        f"{'mean':<57}{m['psnr']:>8.2f}{m['ssim']:>7.3f}{m['encode_fps']:>9.1f}{m['decode_fps']:>9.1f}"
    )
    if m["change_psnr"] is not None:
        print(f"PSNR of frame-to-frame changes (flicker): {m['change_psnr']:.2f} dB")
    if m["latent_change"] is not None:
        print(
            f"latents fitted by {args.refine_steps} decoder steps moved {m['latent_change']:.3f} "
            "rms from the encoder's (encode fps includes the fit)"
        )
    by_frame = report["psnr_by_frame"]
    print(
        "PSNR by frame: " + ", ".join(f"{k}: {by_frame[k]:.2f}" for k in range(0, len(by_frame), 4))
    )
    print(f"report: {args.json_out}")
    return 0


# --- train -------------------------------------------------------------------------------------


def _add_train(commands) -> None:
    p = _command(
        commands,
        "train",
        "train from a YAML config (resumes from its out_dir); `train plot RUN`, `train export "
        "RUN`, `train recipe` (the default model end to end)",
        run_train,
    )
    p.add_argument("config", metavar="CONFIG.yaml|plot|export|recipe", help="a config, or a tool")
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, help="--set KEY=VALUE ... (or the tool's arguments)"
    )


def run_train(args: argparse.Namespace) -> int:
    from kinema.train.cli import main as train_main

    return train_main([args.config, *args.rest])


# --- serve (kinema.serve) ----------------------------------------------------------------------


def _add_serve(commands) -> None:
    p = _command(commands, "serve", "the web studio: every generation mode in a browser", run_serve)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=7860, help="port (default: 7860)")
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    p.add_argument(
        "--password", default=None, help="require a login (default: $KINEMA_STUDIO_PASSWORD)"
    )
    p.add_argument("--user", default="kinema", help="login user name (default: kinema)")
    p.add_argument("--outputs", default="outputs/studio", help="result folder (outputs/studio)")
    p.add_argument(
        "--expander", default="world", choices=["world", "llm", "none"], help="expand backend"
    )
    p.add_argument("--max-queue", type=int, default=8, help="requests waiting (default: 8)")


def _port(value: str) -> int:
    """A --port value: a TCP port number, 0 to 65535."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a whole number in 0..65535, got {value!r}")
    return port


def run_serve(args: argparse.Namespace) -> int:
    import os

    from kinema.language.expand import load_expander
    from kinema.serve.app import ServeOptions, launch
    from kinema.serve.limits import StudioLimits
    from kinema.serve.pipeline_generator import PipelineGenerator
    from kinema.serve.studio import Studio

    check_writable(args.outputs, "--outputs", folder=True)
    expander = load_expander(args.expander)
    generator = PipelineGenerator.from_pretrained(args.model)
    limits = StudioLimits(max_queue=args.max_queue)
    studio = Studio(generator, limits, expander, output_dir=args.outputs)
    password = args.password or os.environ.get("KINEMA_STUDIO_PASSWORD") or None
    options = ServeOptions(args.host, args.port, password, args.user)
    print(f"Kinema studio: http://{args.host}:{args.port} (model {generator.info.name})")
    launch(studio, options)
    return 0


# --- expand, caption (kinema.language) ---------------------------------------------------------


def _add_llm_flags(p, prefix: str) -> None:
    env = f"KINEMA_{prefix.upper()}"
    p.add_argument(f"--{prefix}-url", default=None, help=f"API base URL (${env}_URL)")
    p.add_argument(f"--{prefix}-model", default=None, help=f"model name (${env}_MODEL)")
    p.add_argument(f"--{prefix}-api-key", default=None, help=f"API key (${env}_API_KEY)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per request (60)")
    p.add_argument("--retries", type=int, default=None, help="retries per request (2)")


def _add_expand(commands) -> None:
    p = _command(commands, "expand", "expand a short prompt into a detailed caption", run_expand)
    p.add_argument("prompt")
    p.add_argument("--backend", default="world", choices=["world", "llm", "none"])
    p.add_argument("--seed", type=int, default=None, help="fill-in choices (world), LLM seed")
    p.add_argument("--json", action="store_true", help="print the expansion as JSON")
    _add_llm_flags(p, "llm")


def run_expand(args: argparse.Namespace) -> int:
    from kinema.language.expand import load_expander

    expander = load_expander(
        args.backend,
        url=args.llm_url,
        model=args.llm_model,
        api_key=args.llm_api_key,
        timeout=args.timeout,
        retries=args.retries,
    )
    expansion = expander.expand(args.prompt, seed=args.seed)
    for warning in expansion.warnings:
        print(f"kinema: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps({**expansion.__dict__, "backend": expansion.backend.value}))
    else:
        print(expansion.prompt)
    return 0


def _add_caption(commands) -> None:
    p = _command(commands, "caption", "re-caption a manifest's clips (resumable)", run_caption)
    p.add_argument("manifest", help="manifest.jsonl whose records have a path")
    p.add_argument("--out", required=True, help="output manifest (appended to; reruns resume)")
    p.add_argument("--keyframes", type=int, default=4, help="frames sent per clip (default 4)")
    p.add_argument("--max-side", type=int, default=384, help="keyframe longer side (384)")
    p.add_argument("--workers", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("--rpm", type=float, default=None, help="requests per minute (no limit)")
    p.add_argument("--field", default="caption", help="record field to write (caption)")
    p.add_argument("--limit", type=int, default=None, help="caption at most N clips this run")
    _add_llm_flags(p, "vlm")


def run_caption(args: argparse.Namespace) -> int:
    from kinema.language.caption import CaptionJob, recaption_manifest
    from kinema.language.openai_client import ChatClient, EndpointConfig

    config = EndpointConfig.from_env(
        "KINEMA_VLM",
        url=args.vlm_url,
        model=args.vlm_model,
        api_key=args.vlm_api_key,
        timeout=args.timeout,
        retries=args.retries,
    )
    job = CaptionJob(
        Path(args.manifest),
        Path(args.out),
        keyframes=args.keyframes,
        max_side=args.max_side,
        workers=args.workers,
        requests_per_minute=args.rpm,
        field=args.field,
        limit=args.limit,
    )
    report = recaption_manifest(job, ChatClient(config))
    print(
        f"{report.captioned} captioned, {report.already_done} already done, "
        f"{len(report.failed)} failed of {report.total} clips in {report.seconds:.1f} s"
        f" -> {job.out}"
    )
    for path, error in report.failed:
        print(f"  failed: {path}: {error}", file=sys.stderr)
    return 1 if report.failed else 0


# --- data --------------------------------------------------------------------------------------


def _add_data(commands) -> None:
    data = _group(commands, "data", "training data manifests")
    p = _command(data, "scan", "probe a folder of videos/images into a manifest", run_data_scan)
    p.add_argument("folder", help="folder of videos and images (NAME.txt beside = its caption)")
    p.add_argument("--out", required=True, help="manifest.jsonl to write")
    p.add_argument("--no-recursive", action="store_true", help="only the folder itself")


def run_data_scan(args: argparse.Namespace) -> int:
    from kinema.data.manifest import scan_folder

    check_writable(args.out, "--out")
    report = scan_folder(args.folder, args.out, recursive=not args.no_recursive)
    print(report.summary())
    return 0


def _add_cache(commands) -> None:
    p = _command(
        commands, "cache", "precompute VAE latents and text tokens of a manifest", run_cache
    )
    p.add_argument("manifest", help="manifest.jsonl (from `kinema data scan` or `world make`)")
    p.add_argument("--vae", required=True, help="VAE folder (or a model folder with vae/)")
    p.add_argument("--out", required=True, help="cache folder (resumes when it exists)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--size", default=None, help="fixed WIDTHxHEIGHT (centre crop)")
    size.add_argument(
        "--pixel-budget",
        type=_positive_int,
        default=64 * 64,
        help="native aspect, w*h <= this (4096)",
    )
    p.add_argument("--frames", type=_positive_int, default=33, help="most frames per clip (33)")
    p.add_argument("--patch", default="1x2x2", help="DiT patch TxHxW (default 1x2x2)")
    p.add_argument("--shard-size", type=_positive_int, default=64, help="records per shard (64)")
    p.add_argument(
        "--bf16",
        action="store_true",
        help="encode under bfloat16 autocast: faster where bf16 is native (GPUs, CPUs with "
        "AVX512-BF16 or AMX), far slower on other CPUs",
    )
    p.add_argument("--text-encoder", default=None, help="'minilm' (default) or a local HF folder")
    p.add_argument("--rank", type=int, default=None, help="this process (default: $RANK or 0)")
    p.add_argument(
        "--world-size", type=int, default=None, help="processes (default: $WORLD_SIZE or 1)"
    )


def _positive_int(value: str) -> int:
    """An int >= 1, checked as the command line is read (argparse names the flag)."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}")
    return number


def _parse_patch(text: str) -> tuple[int, int, int]:
    try:
        pt, ph, pw = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"patch {text!r} is not TxHxW, e.g. 1x2x2") from e
    return pt, ph, pw


def run_cache(args: argparse.Namespace) -> int:
    import os

    from kinema.compression.evaluate import load_vae
    from kinema.data.cache import CacheSettings, build_cache
    from kinema.data.manifest import read_manifest
    from kinema.text import load_text_encoder
    from kinema.world.dataset import parse_size

    check_writable(args.out, "--out", folder=True)
    rank = args.rank if args.rank is not None else int(os.environ.get("RANK", "0"))
    world_size = args.world_size
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    settings = CacheSettings(
        size=None if args.size is None else parse_size(args.size),
        pixel_budget=args.pixel_budget,
        max_frames=args.frames,
        patch=_parse_patch(args.patch),
        shard_size=args.shard_size,
        bf16=args.bf16,
    )
    records = read_manifest(args.manifest)
    vae = load_vae(args.vae).eval().requires_grad_(False)
    encoder = load_text_encoder(args.text_encoder)
    report = build_cache(records, vae, encoder, args.out, settings, rank, world_size)
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
