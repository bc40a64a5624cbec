"""Tests for kinema.compression: the causal video VAE on the tiny `debug` preset (seconds)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from kinema.compression import PRESETS, CausalVAE, VAEConfig
from kinema.compression.layers import (
    CausalConv3d,
    Downsample,
    StreamCache,
    Upsample,
    conv3d_split_rows,
    mean_pairs_in_time,
)
from kinema.compression.vae import feather_weights, tile_starts

DEBUG = PRESETS["debug"]  # 4x time, 4x space, 4 latent channels
TC, SC = DEBUG.time_compression, DEBUG.space_compression


def make_vae(config: VAEConfig = DEBUG, seed: int = 0) -> CausalVAE:
    torch.manual_seed(seed)
    return CausalVAE(config).eval()


@pytest.fixture(scope="module")
def vae() -> CausalVAE:
    return make_vae()


def random_video(T: int, H: int = 16, W: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, T, H, W, generator=g) * 2 - 1  # (1, 3, T, H, W) in [-1, 1)


def smooth_video(T: int, H: int, W: int) -> torch.Tensor:
    t = torch.linspace(0, 1, T)[:, None, None]
    y = torch.linspace(0, 1, H)[None, :, None]
    x = torch.linspace(0, 1, W)[None, None, :]
    channels = [
        torch.sin(3 * x + 2 * y + t),
        torch.cos(2 * x - 3 * y + 0 * t),
        torch.sin(4 * y + t) * torch.cos(x),
    ]
    return 0.8 * torch.stack(channels).unsqueeze(0)  # (1, 3, T, H, W)


def psnr(a: torch.Tensor, reference: torch.Tensor) -> float:
    peak = (reference.max() - reference.min()).item()
    return 10 * math.log10(peak**2 / ((a - reference) ** 2).mean().item())


# ------------------------------------------------------------------------------------ config


def test_presets_compression() -> None:
    assert (DEBUG.time_compression, DEBUG.space_compression, DEBUG.latent_channels) == (4, 4, 4)
    for name in ("small", "base"):
        cfg = PRESETS[name]
        assert (cfg.time_compression, cfg.space_compression, cfg.latent_channels) == (4, 8, 16)
    assert PRESETS["base"].base_channels > PRESETS["small"].base_channels


def test_config_dict_round_trip_and_errors() -> None:
    for cfg in PRESETS.values():
        d = json.loads(json.dumps(cfg.to_dict()))
        assert VAEConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown VAEConfig fields"):
        VAEConfig.from_dict({"latent_chanels": 4})
    with pytest.raises(ValueError, match="temporal_downsample has 1 entries"):
        VAEConfig(channel_multipliers=(1, 2, 4), temporal_downsample=(True,))


def test_frame_count_rule() -> None:
    assert [DEBUG.num_latent_frames(T) for T in (1, 2, 5, 6, 9, 17)] == [1, 2, 2, 3, 3, 5]
    assert [DEBUG.num_video_frames(t) for t in (1, 2, 5)] == [1, 5, 17]
    assert DEBUG.latent_shape(17, 32, 48) == (4, 5, 8, 12)


# ------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize(
    ("T", "H", "W"),
    [(1, 16, 16), (5, 16, 16), (9, 8, 24), (13, 24, 8), (2, 16, 16), (7, 8, 12), (12, 4, 4)],
)
def test_shapes(vae: CausalVAE, T: int, H: int, W: int) -> None:
    with torch.no_grad():
        z = vae.encode(random_video(T, H, W))
        assert z.shape == (1, *DEBUG.latent_shape(T, H, W))
        t = z.shape[2]
        assert vae.decode(z).shape == (1, 3, 1 + TC * (t - 1), H, W)
        assert vae.decode(z, num_frames=T).shape == (1, 3, T, H, W)


def test_other_temporal_layout_shapes_and_chunking() -> None:
    cfg = dataclasses.replace(DEBUG, temporal_downsample=(False, True))  # 2x time, 4x space
    model = make_vae(cfg)
    video = random_video(7, 8, 16)
    with torch.no_grad():
        z = model.encode(video)
        assert z.shape == (1, 4, 4, 2, 4)
        assert model.decode(z).shape == (1, 3, 7, 8, 16)
        assert (model.encode(video, chunk_frames=2) - z).abs().max() <= 1e-5
        assert (model.decode(z, chunk_frames=1) - model.decode(z)).abs().max() <= 1e-5


def test_uneven_length_pads_by_repeating_last_frame(vae: CausalVAE) -> None:
    video = random_video(7)  # 7 = 1 + 4 + 2: padded to 9
    padded = torch.cat([video, video[:, :, -1:], video[:, :, -1:]], dim=2)
    with torch.no_grad():
        assert torch.equal(vae.encode(video), vae.encode(padded))
    with pytest.raises(ValueError, match=r"num_frames=10 does not come from 3 latent frames"):
        vae.decode(torch.zeros(1, 4, 3, 4, 4), num_frames=10)


def test_image_is_first_frame_of_video(vae: CausalVAE) -> None:
    video = random_video(9)
    with torch.no_grad():
        image_latent = vae.encode(video[:, :, :1])  # (1, 4, 1, 4, 4)
        assert (image_latent - vae.encode(video)[:, :, :1]).abs().max() <= 1e-6


# ------------------------------------------------------------------------------------ causality


@pytest.mark.parametrize("k", [1, 4, 5, 8, 12])
def test_encoder_is_causal(vae: CausalVAE, k: int) -> None:
    video = random_video(13)
    changed = video.clone()
    changed[:, :, k] = -changed[:, :, k]
    first_affected = math.ceil(k / TC)  # latent j covers frames tc*(j-1)+1 .. tc*j
    with torch.no_grad():
        z, z_changed = vae.encode(video), vae.encode(changed)
    assert (z[:, :, :first_affected] - z_changed[:, :, :first_affected]).abs().max() <= 1e-6
    assert (z[:, :, first_affected] - z_changed[:, :, first_affected]).abs().max() > 1e-4


@pytest.mark.parametrize("j", [1, 2])
def test_decoder_is_causal(vae: CausalVAE, j: int) -> None:
    z = torch.randn(1, 4, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    changed = z.clone()
    changed[:, :, j] += 1.0
    first_affected = TC * (j - 1) + 1  # latent j decodes to frames tc*(j-1)+1 .. tc*j
    with torch.no_grad():
        video, video_changed = vae.decode(z), vae.decode(changed)
    diff = (video - video_changed).abs().amax(dim=(0, 1, 3, 4))  # (T,)
    assert diff[:first_affected].max() <= 1e-6
    assert diff[first_affected] > 1e-4


@pytest.mark.parametrize(
    ("kernel", "stride", "size"),
    [
        ((3, 3, 3), (1, 1, 1), (7, 6, 8)),
        ((3, 3, 3), (2, 2, 2), (9, 8, 6)),
        ((2, 1, 3), (1, 1, 2), (5, 4, 7)),
        ((1, 3, 3), 1, (1, 10, 4)),
        ((3, 3, 3), (1, 2, 1), (3, 7, 5)),
    ],
)
def test_conv3d_split_rows_matches_conv3d(kernel, stride, size) -> None:
    torch.manual_seed(0)
    padding = (0, kernel[1] // 2, kernel[2] // 2)
    conv = torch.nn.Conv3d(3, 5, kernel, stride=stride, padding=padding)
    x = torch.randn(1, 3, *size, requires_grad=True)
    reference = conv(x)
    reference.square().sum().backward()
    grads = (x.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone())
    x.grad = conv.weight.grad = conv.bias.grad = None
    split = conv3d_split_rows(x, conv)
    split.square().sum().backward()
    assert split.shape == reference.shape
    assert torch.allclose(split, reference, atol=1e-5)
    for got, want in zip((x.grad, conv.weight.grad, conv.bias.grad), grads, strict=True):
        assert torch.allclose(got, want, atol=1e-4)


def test_conv3d_split_rows_refuses_what_it_cannot_split() -> None:
    conv = torch.nn.Conv3d(2, 2, 3, padding=(0, 1, 1))
    with pytest.raises(ValueError, match="even number of output rows, got 5"):
        conv3d_split_rows(torch.randn(1, 2, 5, 5, 4), conv)
    with pytest.raises(ValueError, match="batch 2"):
        conv3d_split_rows(torch.randn(2, 2, 5, 4, 4), conv)


def test_causal_conv_is_the_same_on_either_cpu_path() -> None:
    """A small clip goes through conv3d_split_rows and a batched one through conv3d; both agree."""
    torch.manual_seed(0)
    conv = CausalConv3d(4, 4, 3, stride=(2, 2, 2))
    x = torch.randn(2, 4, 9, 8, 8)
    with torch.no_grad():
        batched = conv(x)  # batch of 2: PyTorch's conv3d
        alone = torch.cat([conv(x[i : i + 1]) for i in range(2)])  # one clip: by frames
    assert torch.allclose(batched, alone, atol=1e-5)


# ------------------------------------------------------------------------------------ chunking


def test_streaming_strided_conv_matches_whole_clip() -> None:
    torch.manual_seed(0)
    conv = CausalConv3d(2, 3, 3, stride=(2, 1, 1))
    x = torch.randn(1, 2, 11, 4, 4)
    with torch.no_grad():
        whole = conv(x)  # (1, 3, 6, 4, 4)
        cache = StreamCache()
        pieces, start = [], 0
        for size in (1, 0, 2, 1, 3, 4):  # uneven chunks, including an empty one
            pieces.append(conv(x[:, :, start : start + size], cache))
            start += size
    assert whole.shape[2] == (11 - 1) // 2 + 1
    assert (torch.cat(pieces, dim=2) - whole).abs().max() <= 1e-6
    assert cache.conv[conv].frames.shape[2] <= 2  # keeps only kernel_t - 1 frames


@pytest.mark.parametrize(("T", "chunk"), [(17, 4), (17, 8), (17, 12), (11, 4), (5, 16)])
def test_chunked_encode_equals_whole(vae: CausalVAE, T: int, chunk: int) -> None:
    video = random_video(T)
    with torch.no_grad():
        whole = vae.encode(video)
        chunked = vae.encode(video, chunk_frames=chunk)
    assert chunked.shape == whole.shape
    assert (chunked - whole).abs().max() <= 1e-5


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_chunked_decode_equals_whole(vae: CausalVAE, chunk: int) -> None:
    z = torch.randn(1, 4, 5, 4, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = vae.decode(z)
        chunked = vae.decode(z, chunk_frames=chunk)
    assert chunked.shape == whole.shape == (1, 3, 17, 16, 16)
    assert (chunked - whole).abs().max() <= 1e-5


def test_bad_chunk_frames(vae: CausalVAE) -> None:
    with pytest.raises(ValueError, match="chunk_frames=3 must be a positive multiple of 4"):
        vae.encode(random_video(5), chunk_frames=3)
    with pytest.raises(ValueError, match="chunk_frames=0"):
        vae.decode(torch.zeros(1, 4, 2, 4, 4), chunk_frames=0)


# ------------------------------------------------------------------------------------ shortcuts

SHORTCUTS = dataclasses.replace(DEBUG, shortcuts=True)  # last width 16 = 4 x 4 latent channels


def test_shortcuts_need_a_width_the_latents_divide() -> None:
    with pytest.raises(ValueError, match=r"last stage's width \(16\) to be a multiple of .* \(3\)"):
        dataclasses.replace(DEBUG, latent_channels=3, shortcuts=True)
    assert VAEConfig.from_dict({k: v for k, v in DEBUG.to_dict().items() if k != "shortcuts"}) == (
        DEBUG
    )  # a config.json written before the field loads without shortcuts


def test_time_pooling_streams_in_any_chunks() -> None:
    x = torch.randn(1, 2, 11, 2, 2, generator=torch.Generator().manual_seed(4))
    module = torch.nn.Identity()
    whole = mean_pairs_in_time(module, x, None)  # frame 0, then (1, 2), (3, 4) ... (9, 10)
    assert whole.shape[2] == 6
    assert torch.allclose(whole[:, :, 0], x[:, :, 0])
    assert torch.allclose(whole[:, :, 3], (x[:, :, 5] + x[:, :, 6]) / 2)
    cache, pieces, start = StreamCache(), [], 0
    for size in (1, 0, 2, 1, 3, 4):
        pieces.append(mean_pairs_in_time(module, x[:, :, start : start + size], cache))
        start += size
    assert torch.allclose(torch.cat(pieces, dim=2), whole)


def test_shortcuts_carry_the_input_through_resampling() -> None:
    torch.manual_seed(0)
    down, up = Downsample(2, temporal=True, shortcut=True), Upsample(2, True, shortcut=True)
    for module in (down, up):
        for p in module.parameters():
            torch.nn.init.zeros_(p)  # the convolutions add nothing: the shortcut alone is left
    # frame 0, then pairs of equal frames, each 2x2 block of pixels equal: what pooling keeps
    coarse = torch.randn(1, 2, 4, 3, 3)  # (B, C, t, h, w)
    x = up(coarse)  # (1, 2, 7, 6, 6): latent frame 0 to frame 0, frame l to frames 2l - 1, 2l
    assert x.shape == (1, 2, 7, 6, 6)
    assert torch.equal(x[:, :, 3, ::2, ::2], coarse[:, :, 2])
    assert torch.equal(x[:, :, 3], x[:, :, 4])
    assert torch.allclose(down(x), coarse)


@pytest.mark.parametrize("k", [1, 4, 5, 8])
def test_shortcut_vae_is_causal_and_chunks_equal_whole(k: int) -> None:
    model = make_vae(SHORTCUTS)
    video = random_video(13)
    changed = video.clone()
    changed[:, :, k] = -changed[:, :, k]
    first_affected = math.ceil(k / TC)
    with torch.no_grad():
        z, z_changed = model.encode(video), model.encode(changed)
        assert (model.encode(video, chunk_frames=4) - z).abs().max() <= 1e-5
        assert (model.decode(z, chunk_frames=1) - model.decode(z)).abs().max() <= 1e-5
    assert (z[:, :, :first_affected] - z_changed[:, :, :first_affected]).abs().max() <= 1e-6
    assert (z[:, :, first_affected] - z_changed[:, :, first_affected]).abs().max() > 1e-4


# ------------------------------------------------------------------------------------ tiling


def test_tile_layout_and_feathering() -> None:
    assert tile_starts(22, 12, 4) == [0, 8, 10]  # last tile aligned to the end
    assert tile_starts(10, 12, 4) == [0]
    w = feather_weights(6, 2, left=True, right=False)
    assert torch.allclose(w, torch.tensor([1 / 3, 2 / 3, 1, 1, 1, 1]))


def test_tiled_matches_untiled_on_smooth_video(vae: CausalVAE) -> None:
    video = smooth_video(5, 72, 88)  # 72 and 88 are not multiples of the tile stride
    with torch.no_grad():
        z = vae.encode(video)
        z_tiled = vae.encode(video, tile=(48, 48), tile_overlap=16)
        frames = vae.decode(z)
        frames_tiled = vae.decode(z, tile=(48, 48), tile_overlap=16)
        frames_seams = vae.decode(z, tile=(48, 48), tile_overlap=0)
    assert z_tiled.shape == z.shape and frames_tiled.shape == frames.shape
    assert psnr(z_tiled, z) > 25  # an untrained net: every tile edge is a zero-padded border
    assert psnr(frames_tiled, frames) > 30
    assert psnr(frames_tiled, frames) > psnr(frames_seams, frames)  # feathering helps


def test_tile_larger_than_frame_is_untiled(vae: CausalVAE) -> None:
    video = random_video(5, 16, 16)
    with torch.no_grad():
        z = vae.encode(video)
        assert torch.allclose(vae.encode(video, tile=(32, 32)), z, atol=1e-6)
        assert torch.allclose(vae.decode(z, tile=(64, 64)), vae.decode(z), atol=1e-6)
        chunked_tiled = vae.encode(random_video(9, 24, 24), chunk_frames=4, tile=(16, 16))
        assert chunked_tiled.shape == (1, 4, 3, 6, 6)


def test_bad_tiles(vae: CausalVAE) -> None:
    with pytest.raises(ValueError, match="positive multiples of 4"):
        vae.encode(random_video(1), tile=(10, 16))
    with pytest.raises(ValueError, match="tile_overlap=16 must be a multiple of 4 in"):
        vae.encode(random_video(1), tile=(16, 16), tile_overlap=16)


# ------------------------------------------------------------------------------------ posterior


def test_posterior_and_normalization(vae: CausalVAE) -> None:
    video = random_video(5)
    model = make_vae()
    with torch.no_grad():
        mean, logvar = model.encode_distribution(video)
        assert mean.shape == logvar.shape == (1, 4, 2, 4, 4)
        shift, scale = CausalVAE.measure_latent_stats(mean)
        assert shift.shape == scale.shape == (4,)
        # several latents of different sizes count every position once, as one tensor would
        first, rest = mean[:, :, :1], mean[:, :, 1:, :2]
        both = torch.cat([first.flatten(2), rest.flatten(2)], dim=2)
        s2, c2 = CausalVAE.measure_latent_stats([first, rest])
        torch.testing.assert_close(s2, both[0].mean(dim=1))
        torch.testing.assert_close(c2, both[0].std(dim=1))
        model.set_latent_stats(shift, scale)
        z = model.encode(video)
        assert torch.allclose(z, (mean - shift.view(1, -1, 1, 1, 1)) / scale.view(1, -1, 1, 1, 1))
        assert torch.allclose(model.decode(z), vae.decode(mean), atol=1e-5)  # vae: default stats
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        s1 = model.encode(video, sample=True, generator=g1)
        assert torch.equal(s1, model.encode(video, sample=True, generator=g2))
        assert not torch.allclose(s1, z)
    with pytest.raises(ValueError, match="scale finite and > 0"):
        model.set_latent_stats(torch.zeros(4), torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        model.set_latent_stats(torch.zeros(3), torch.ones(3))


def test_forward_backward() -> None:
    model = make_vae().train()
    video = random_video(5, 8, 8)
    out = model(video, generator=torch.Generator().manual_seed(0))
    assert out.reconstruction.shape == video.shape
    loss = (out.reconstruction - video).pow(2).mean() + out.mean.pow(2).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


# ------------------------------------------------------------------------------------ input errors


@pytest.mark.parametrize(
    ("H", "W", "message"),
    [
        (18, 16, "video height 18 is not a multiple of the spatial compression 4; "
                 "nearest valid heights: 16 or 20"),
        (16, 3, "video width 3 is not a multiple of the spatial compression 4; "
                "nearest valid widths: 4"),
    ],
)  # fmt: skip
def test_bad_sizes_name_nearest_valid(vae: CausalVAE, H: int, W: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vae.encode(random_video(1, H, W))


def test_bad_layouts(vae: CausalVAE) -> None:
    with pytest.raises(ValueError, match="video has 4 channels, expected 3"):
        vae.encode(torch.zeros(1, 4, 1, 8, 8))
    with pytest.raises(ValueError, match=r"video must be \(B, C, T, H, W\)"):
        vae.encode(torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="latents have 3 channels, expected 4"):
        vae.decode(torch.zeros(1, 3, 1, 2, 2))


# ------------------------------------------------------------------------------------ save / load


def test_save_load_round_trip(tmp_path) -> None:
    model = make_vae()
    model.set_latent_stats(torch.tensor([0.1, -0.2, 0.3, 0.0]), torch.tensor([1.5, 2.0, 0.5, 1.0]))
    target = tmp_path / "vae"
    model.save_pretrained(target)
    model.save_pretrained(target)  # overwriting an existing checkpoint works
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["vae"]  # no temporary directories left
    loaded = CausalVAE.from_pretrained(target)
    assert loaded.config == model.config
    assert torch.equal(loaded.latent_scale, model.latent_scale)
    video = random_video(5)
    with torch.no_grad():
        z = model.encode(video)
        assert torch.equal(loaded.encode(video), z)
        assert torch.equal(loaded.decode(z), model.decode(z))


def test_refuses_to_save_non_finite_weights(tmp_path) -> None:
    model = make_vae()
    with torch.no_grad():
        model.decoder.conv_out.conv.weight[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values in \['decoder.conv_out.conv.weight"):
        model.save_pretrained(tmp_path / "vae")
    assert list(tmp_path.iterdir()) == []


def test_load_errors_name_the_path(tmp_path) -> None:
    target = tmp_path / "vae"
    make_vae().save_pretrained(target)
    weights = target / "model.safetensors"
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a safetensors header")
    with pytest.raises(ValueError, match="corrupt or unreadable safetensors file") as info:
        CausalVAE.from_pretrained(target)
    assert str(weights) in str(info.value)
    weights.unlink()
    with pytest.raises(FileNotFoundError) as missing:
        CausalVAE.from_pretrained(target)
    assert str(weights) in str(missing.value)
