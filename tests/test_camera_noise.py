"""Camera-primed noise: reading the camera move from prompts, and noise that carries latent frame 0
along it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema.camera_noise import (
    CameraMove,
    CameraSpeeds,
    check_camera_noise,
    prime_noise,
    read_camera_move,
)
from kinema.diffusion import draw_noise
from kinema.world.captions import detailed_caption, short_prompt
from kinema.world.sampler import sample_scene


@pytest.mark.parametrize(
    ("prompt", "camera"),
    [
        ("a red ball, the camera pans left", CameraMove(pan=(-1.0, 0.0))),
        ("The camera tilts upward throughout the clip.", CameraMove(pan=(0.0, -1.0))),
        ("the view slides to the right over a box", CameraMove(pan=(1.0, 0.0))),
        ("a cat on a sofa, panning downward", CameraMove(pan=(0.0, 1.0))),
        ("the camera zooms in on a red ball", CameraMove(zoom=1)),
        ("a city street, camera pulling back", CameraMove(zoom=-1)),
        ("the view widens out while a ball falls", CameraMove(zoom=-1)),
        ("a red ball bounces on a blue floor", None),
        ("a box slides left, locked-off camera", None),
        ("a ball moves left as the camera zooms out", CameraMove(zoom=-1)),
        ("the view slides upward while a red box travels left", CameraMove(pan=(0.0, -1.0))),
        ("a leftover pancake", None),
    ],
)
def test_the_camera_move_is_read_from_the_prompt(prompt, camera):
    assert read_camera_move(prompt) == camera


def test_every_world_prompt_reads_as_its_scene_s_camera():
    """The world's own words, over 300 scenes: the camera of the spec, from the short prompt and
    from the detailed caption (whose object moves never read as the camera's)."""
    cameras = {
        "pan left": CameraMove(pan=(-1.0, 0.0)),
        "pan right": CameraMove(pan=(1.0, 0.0)),
        "pan up": CameraMove(pan=(0.0, -1.0)),
        "pan down": CameraMove(pan=(0.0, 1.0)),
        "zoom in": CameraMove(zoom=1),
        "zoom out": CameraMove(zoom=-1),
    }
    rng = np.random.default_rng(0)
    for _ in range(300):
        spec = sample_scene(rng)
        for text in (short_prompt(spec, rng), detailed_caption(spec, rng)):
            assert read_camera_move(text) == cameras.get(spec.camera.value), text


def noise(T: int = 5, H: int = 16, W: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(4, T, H, W, generator=torch.Generator().manual_seed(seed))


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_no_move_or_no_strength_leaves_the_noise_as_it_is():
    n = noise()
    pan = read_camera_move("the camera pans left")
    assert prime_noise(n, None, 0.5, 0.9) is n
    assert prime_noise(n, CameraMove(), 0.5, 0.9) is n
    assert prime_noise(n, pan, 0.5, 0.0) is n
    image = n[:, :1]
    assert prime_noise(image, pan, 0.5, 0.9) is image  # one latent frame: nothing to carry


def test_a_pan_carries_frame_0_the_other_way_and_keeps_unit_gaussians():
    n, strength = noise(T=7, H=32, W=32), 0.9
    speeds = CameraSpeeds(pan=0.125)  # 4 pixels of a 32-pixel frame per second
    primed = prime_noise(n, read_camera_move("the camera pans right"), 0.5, strength, speeds)
    assert torch.equal(primed[:, 0], n[:, 0])
    for j in range(1, 7):
        shift = 2 * j  # the view moves right, so what it shows moves left
        carried = torch.roll(n[:, 0], -shift, dims=2)
        assert correlation(primed[:, j], carried) > 0.85
        assert abs(correlation(primed[:, j], torch.roll(n[:, 0], shift, dims=2))) < 0.1
        assert abs(float(primed[:, j].std()) - 1) < 0.05
        assert abs(float(primed[:, j].mean())) < 0.05


def test_a_zoom_scales_frame_0s_noise_about_the_centre():
    n = noise(T=5, H=32, W=32)
    # a smooth frame 0, so that where its values land can be checked to a fraction of a pixel
    coarse = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    n[:, 0] = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bicubic")[0]
    speeds = CameraSpeeds(zoom=1.5)
    zoom_in = prime_noise(n, CameraMove(zoom=1), 1.0, 0.9, speeds)
    g = torch.Generator().manual_seed(1)
    zoom_out = prime_noise(n, CameraMove(zoom=-1), 1.0, 0.9, speeds, generator=g)
    again = prime_noise(n, CameraMove(zoom=-1), 1.0, 0.9, speeds, torch.Generator().manual_seed(1))
    assert torch.equal(zoom_out, again)  # the canvas around frame 0 comes from the generator
    # zoomed in by 1.5, the middle 21x21 of frame 0 fills frame 1
    up = torch.nn.functional.interpolate(n[None, :, 0, 5:27, 5:27], size=(32, 32))[0]
    assert correlation(zoom_in[:, 1], up) > 0.75
    assert correlation(zoom_out[:, 1], up) < 0.3
    # zoomed out by 1.5, frame 0 shrinks into the middle 21x21 of frame 1
    down = torch.nn.functional.interpolate(n[:, 0][None], size=(21, 21), mode="bicubic")[0]
    assert correlation(zoom_out[:, 1, 5:26, 5:26], down) > 0.75
    assert correlation(zoom_in[:, 1, 5:26, 5:26], down) < 0.3
    for primed in (zoom_in, zoom_out):
        assert torch.equal(primed[:, 0], n[:, 0])
        assert abs(float(primed[:, 4].std()) - 1) < 0.05


def test_what_a_zoom_out_sees_past_frame_0_comes_from_one_canvas_for_the_clip():
    n, other = noise(T=5, H=32, W=32), noise(T=5, H=32, W=32, seed=1)
    other[:, 0] = n[:, 0]
    speeds = CameraSpeeds(zoom=1.5)

    def zoom_out(frames: torch.Tensor, seed: int) -> torch.Tensor:  # strength 1: warps alone
        generator = torch.Generator().manual_seed(seed)
        return prime_noise(frames, CameraMove(zoom=-1), 0.25, 1.0, speeds, generator)

    # with strength 1 every frame is a view of the canvas: the frames' own noise plays no part
    assert torch.allclose(zoom_out(n, 2), zoom_out(other, 2))
    # another canvas changes what lies past frame 0 (the edges), not frame 0's part (the middle)
    a, b = zoom_out(n, 2)[:, 4], zoom_out(n, 3)[:, 4]  # frame 0 shrunk by 1.5 into the middle 21
    assert correlation(a[:, 9:23, 9:23], b[:, 9:23, 9:23]) > 0.99  # (each frame standardized)
    assert (a[:, :3] - b[:, :3]).abs().mean() > 0.5


def test_prime_noise_checks_its_inputs():
    with pytest.raises(ValueError, match="strength must be a number from 0 to 1"):
        prime_noise(noise(), CameraMove(zoom=1), 0.5, 1.5)
    with pytest.raises(ValueError, match=r"\(C, t, h, w\)"):
        prime_noise(torch.zeros(4, 4, 4), CameraMove(zoom=1), 0.5, 0.5)
    with pytest.raises(ValueError, match="camera_noise must be a number from 0 to 1"):
        check_camera_noise(-0.1)
    with pytest.raises(ValueError, match="zoom must be a finite number > 0"):
        CameraSpeeds(zoom=0)
    with pytest.raises(ValueError, match="pan must be a finite number >= 0"):
        CameraSpeeds(pan=float("nan"))
    with pytest.raises(ValueError, match="pan must be a finite number >= 0, got True"):
        CameraSpeeds(pan=True)
    with pytest.raises(ValueError, match="camera_noise must be a number from 0 to 1"):
        check_camera_noise(True)


def test_draw_noise_is_the_noise_generate_latents_starts_from():
    from kinema.diffusion import generate_latents
    from kinema.transformer import DiT, get_preset

    torch.manual_seed(0)
    dit = DiT(get_preset("debug", in_dim=4 * 4, text_dim=8)).eval()
    text = torch.randn(3, 8)
    shape, patch = (4, 2, 4, 4), (1, 2, 2)
    kwargs = dict(steps=2, guidance_scale=2.0)
    with torch.no_grad():
        drawn = generate_latents(
            dit, text, text[:0], shape, patch, generator=torch.Generator().manual_seed(5), **kwargs
        )
        given = generate_latents(
            dit,
            text,
            text[:0],
            shape,
            patch,
            noise=draw_noise(shape, patch, torch.Generator().manual_seed(5)),
            **kwargs,
        )
    assert torch.equal(drawn, given)
    assert not drawn.requires_grad  # sampling builds no autograd graph
    with pytest.raises(ValueError, match="does not match latents"):
        generate_latents(dit, text, text[:0], shape, patch, noise=torch.zeros(4, 1, 4, 4))
