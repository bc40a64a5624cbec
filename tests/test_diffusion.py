"""Flow matching over packed tokens: conditioning tokens are clean and out of the loss, and a tiny
DiT overfits one world clip so that sampling reproduces its latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema.compression.vae import PRESETS as VAE_PRESETS
from kinema.compression.vae import CausalVAE
from kinema.diffusion import TrainingSample, flow_matching_loss, generate_latents, pack_batch
from kinema.transformer import DiT, get_preset
from kinema.world.render import render_scene
from kinema.world.sampler import sample_scene

PATCH = (1, 2, 2)


def world_latents() -> torch.Tensor:
    """Latents (4, 3, 4, 4) of a 9-frame 16x16 world clip through the debug VAE (fixed seed)."""
    torch.manual_seed(0)
    vae = CausalVAE(VAE_PRESETS["debug"]).eval()
    spec = sample_scene(np.random.default_rng(4), 16, 16, num_frames=9)
    frames = torch.from_numpy(render_scene(spec)).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        z = vae.encode(frames)[0]  # (C, t, h, w)
    return (z - z.mean()) / z.std()


def tiny_dit() -> DiT:
    torch.manual_seed(0)
    return DiT(get_preset("debug", in_dim=16, text_dim=8))


def test_pack_batch_marks_conditioning_tokens():
    a = TrainingSample(
        torch.randn(4, 3, 4, 4), torch.randn(5, 8), torch.tensor([True, False, False])
    )
    b = TrainingSample(torch.randn(4, 2, 2, 4), torch.randn(0, 8))
    batch = pack_batch([a, b], PATCH)
    assert batch.packed.lengths == [12, 4]
    assert batch.clean[:4].all() and not batch.clean[4:].any()  # frame 0 of a: 2x2 tokens
    assert batch.text_ids.tolist() == [0] * 5
    with pytest.raises(ValueError, match="one flag per latent frame"):
        pack_batch([TrainingSample(a.latents, a.text, torch.tensor([True]))], PATCH)


def test_guidance_in_one_packed_pass_matches_two_passes(monkeypatch):
    """generate_latents evaluates the prompt and the negative text as two samples of one packed
    sequence; the clip is what one pass per text gives."""
    import kinema.sampling as sampling

    model = tiny_dit().eval()
    with torch.no_grad():  # zero-initialized layers would make every text give one velocity
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    text, negative = torch.randn(5, 8), torch.randn(0, 8)
    given, frames = torch.randn(4, 3, 4, 4), torch.tensor([True, False, False])

    def clip() -> torch.Tensor:
        return generate_latents(
            model,
            text,
            negative,
            (4, 3, 4, 4),
            PATCH,
            steps=3,
            guidance_scale=5.0,
            given=given,
            given_frames=frames,
            generator=torch.Generator().manual_seed(1),
        )

    calls = []
    monkeypatch.setattr(model, "forward", _counting(model.forward, calls))
    one_pass = clip()
    assert len(calls) == 3 and calls[0] == 2 * 3 * 2 * 2  # one call per step, both texts
    calls.clear()
    monkeypatch.setattr(sampling.TextBoundModel, "both", _two_calls)
    two_passes = clip()
    assert len(calls) == 6 and calls[0] == 3 * 2 * 2
    torch.testing.assert_close(one_pass, two_passes, rtol=1e-5, atol=1e-5)


def _counting(forward, calls: list[int]):
    def wrapped(x, *args):
        calls.append(len(x))
        return forward(x, *args)

    return wrapped


def _two_calls(self, x, t):
    return self(x, t, "cond"), self(x, t, "uncond")


def test_conditioning_flags_follow_latent_frames_with_a_temporal_patch():
    """With 2-frame temporal patches, token row k covers latent frames 2k and 2k + 1."""
    sample = TrainingSample(
        torch.randn(4, 6, 4, 4), torch.randn(3, 8), torch.tensor([True, True, False] + [False] * 3)
    )
    batch = pack_batch([sample], (2, 2, 2))  # 3 x 2 x 2 tokens
    assert batch.clean.tolist() == [True] * 4 + [False] * 8
    torch.manual_seed(0)
    model = DiT(get_preset("debug", in_dim=4 * 2 * 2 * 2, text_dim=8)).eval()
    given = torch.randn(4, 4, 4, 4)
    flags = torch.tensor([True, True, False, False])
    out = generate_latents(
        model,
        torch.randn(3, 8),
        torch.zeros(0, 8),
        (4, 4, 4, 4),
        (2, 2, 2),
        steps=2,
        given=given,
        given_frames=flags,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(out[:, :2], given[:, :2])  # the given frames are kept
    assert not torch.equal(out[:, 2:], given[:, 2:])  # the others are sampled


def test_loss_ignores_conditioning_tokens():
    """Whatever the model predicts on clean (conditioning) tokens, the loss is the same; it sees
    them at t = 0."""
    z, text, cond = torch.randn(4, 3, 4, 4), torch.randn(3, 8), torch.tensor([True, False, False])
    seen = {}

    def model(wild: bool):
        def forward(x, positions, ids, t, text_tokens, text_ids):
            seen["t"] = t
            out = torch.zeros_like(x)
            if wild:
                out[positions[:, 0] == 0] = 1e6  # latent frame 0: the clean one
            return out

        return forward

    sample = [TrainingSample(z, text, cond)]
    calm = flow_matching_loss(model(False), sample, PATCH, torch.Generator().manual_seed(1))
    assert (seen["t"][:4] == 0).all() and (seen["t"][4:] > 0).all()
    wild = flow_matching_loss(model(True), sample, PATCH, torch.Generator().manual_seed(1))
    assert torch.equal(calm, wild)
    unconditioned = [TrainingSample(z, text)]
    assert (
        flow_matching_loss(model(True), unconditioned, PATCH, torch.Generator().manual_seed(1))
        > 1e6
    )


def test_overfitting_one_world_clip_reproduces_its_latents():
    torch.set_num_threads(1)
    z = world_latents()  # (4, 3, 4, 4): 12 tokens
    text = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
    model = tiny_dit()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(400):
        batch = [TrainingSample(z, text) for _ in range(4)]
        loss = flow_matching_loss(model, batch, PATCH, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:5])
    out = generate_latents(
        model,
        text,
        text,
        tuple(z.shape),
        PATCH,
        steps=30,
        generator=torch.Generator().manual_seed(5),
    )
    error = ((out - z) ** 2).mean() / z.var()
    assert error < 0.1, float(error)
    # Reproducible by seed.
    again = generate_latents(
        model,
        text,
        text,
        tuple(z.shape),
        PATCH,
        steps=30,
        generator=torch.Generator().manual_seed(5),
    )
    assert torch.equal(out, again)
    # Conditioning frames are returned exactly as given.
    given = torch.zeros_like(z)
    frames = torch.tensor([True, False, False])
    kept = generate_latents(
        model,
        text,
        text,
        tuple(z.shape),
        PATCH,
        steps=10,
        given=given,
        given_frames=frames,
        generator=torch.Generator().manual_seed(5),
    )
    assert torch.equal(kept[:, 0], given[:, 0])
