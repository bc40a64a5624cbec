"""Tests of the diffusion transformer over packed spacetime tokens (tiny models, a few seconds)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from kinema.transformer import (
    PRESETS,
    AttentionBackend,
    DiT,
    DiTConfig,
    count_parameters,
    flops_per_token,
    get_preset,
    layers,
    pool_text,
    print_presets,
)
from kinema.transformer.layers import (
    apply_rope,
    batched_attention,
    explicit_attention,
    make_segment_mask,
    rope_angles,
    segment_attention,
    split_rope_dims,
)

CONFIG = PRESETS["debug"]
ATOL = 1e-5
slow = pytest.mark.skipif(not os.environ.get("KINEMA_SLOW"), reason="set KINEMA_SLOW=1")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class Sample:
    """One sample's inputs, unpacked."""

    sample_id: int
    tokens: Tensor  # (n, in_dim)
    positions: Tensor  # (n, 3)
    timesteps: Tensor  # (n,)
    text: Tensor  # (m, text_dim)


def make_sample(sample_id: int, grid: tuple[int, int, int], text_len: int, seed: int) -> Sample:
    g = torch.Generator().manual_seed(seed)
    t, h, w = grid
    positions = torch.cartesian_prod(torch.arange(t), torch.arange(h), torch.arange(w))  # (n, 3)
    n = positions.shape[0]
    timesteps = torch.full((n,), torch.rand(1, generator=g).item())
    timesteps[: h * w] = 0.0  # first latent frame is a clean condition
    return Sample(
        sample_id,
        torch.randn(n, CONFIG.in_dim, generator=g),
        positions,
        timesteps,
        torch.randn(text_len, CONFIG.text_dim, generator=g),
    )


def pack(samples: list[Sample], pad_video: int = 0, pad_text: int = 0) -> dict[str, Tensor]:
    """Concatenate samples into one packed sequence (text packed in reverse order), then pad."""
    inputs = {
        "tokens": torch.cat([s.tokens for s in samples] + [torch.randn(pad_video, CONFIG.in_dim)]),
        "positions": torch.cat(
            [s.positions for s in samples] + [torch.randint(0, 9, (pad_video, 3))]
        ),
        "sample_ids": torch.cat(
            [torch.full((len(s.tokens),), s.sample_id) for s in samples]
            + [torch.full((pad_video,), -1)]
        ),
        "timesteps": torch.cat([s.timesteps for s in samples] + [torch.rand(pad_video)]),
        "text_tokens": torch.cat(
            [s.text for s in reversed(samples)] + [torch.randn(pad_text, CONFIG.text_dim)]
        ),
        "text_ids": torch.cat(
            [torch.full((len(s.text),), s.sample_id) for s in reversed(samples)]
            + [torch.full((pad_text,), -1)]
        ),
    }
    return inputs


def three_samples() -> list[Sample]:
    # different grids (an image, a short clip, a wide clip), different text lengths, arbitrary ids
    return [
        make_sample(5, (1, 4, 6), text_len=7, seed=1),
        make_sample(2, (3, 3, 3), text_len=3, seed=2),
        make_sample(9, (2, 2, 5), text_len=11, seed=3),
    ]


def unzero(model: DiT, seed: int = 0) -> DiT:
    """Give every all-zero parameter (adaLN-Zero gates, final layer, ...) small random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def make_model(backend: AttentionBackend = AttentionBackend.SDPA_SEGMENTS, **overrides) -> DiT:
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIG, attention_backend=backend, **overrides)
    return unzero(DiT(config).eval())


def run(model: DiT, inputs: dict[str, Tensor]) -> Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return model(**inputs)


def split_outputs(out: Tensor, samples: list[Sample]) -> list[Tensor]:
    sizes = [len(s.tokens) for s in samples]
    return list(out[: sum(sizes)].split(sizes))


# ------------------------------------------------------------------------------------------------
# Packing
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend",
    [
        AttentionBackend.SDPA_SEGMENTS,
        AttentionBackend.DENSE_MASK,
        # eager FLEX runs an unfused reference, forward only on CPU (about 5 s first call)
        AttentionBackend.FLEX,
    ],
)
def test_pack_equals_each_sample_alone(backend):
    model = make_model(backend)
    samples = three_samples()
    packed = split_outputs(run(model, pack(samples, pad_video=5, pad_text=4)), samples)
    for sample, out in zip(samples, packed, strict=True):
        alone = run(model, pack([sample]))
        assert out.shape == (len(sample.tokens), CONFIG.in_dim)
        torch.testing.assert_close(out, alone, atol=ATOL, rtol=0)
        assert out.abs().max() > 1e-3  # not trivially zero


def test_backends_agree_on_a_pack():
    samples = three_samples()
    inputs = pack(samples, pad_video=3, pad_text=2)
    reference = run(make_model(AttentionBackend.DENSE_MASK), inputs)
    segments = run(make_model(AttentionBackend.SDPA_SEGMENTS), inputs)
    torch.testing.assert_close(segments, reference, atol=ATOL, rtol=0)  # padding rows included


def test_grouped_segments_match_the_dense_reference_with_gradients():
    """Equally long samples share one SDPA call; outputs and gradients equal the dense mask's."""
    torch.manual_seed(0)
    q_ids = torch.tensor([0] * 5 + [1] * 5 + [-1] * 2 + [2] * 3 + [3] * 5 + [4] * 2)
    k_ids = torch.tensor([0] * 4 + [1] * 4 + [3] * 4 + [-1] * 3 + [4] * 2)  # sample 2: no keys
    results = []
    for backend in (AttentionBackend.DENSE_MASK, AttentionBackend.SDPA_SEGMENTS):
        torch.manual_seed(1)
        q = torch.randn(len(q_ids), 2, 8, requires_grad=True)
        k = torch.randn(len(k_ids), 2, 8, requires_grad=True)
        v = torch.randn(len(k_ids), 2, 8, requires_grad=True)
        out = segment_attention(q, k, v, make_segment_mask(q_ids, k_ids, backend))
        out.square().sum().backward()
        results.append((out, q.grad, k.grad, v.grad))
    mask = make_segment_mask(q_ids, k_ids, AttentionBackend.SDPA_SEGMENTS)
    assert sorted(group.samples for group in mask.groups) == [1, 3]  # samples 0, 1, 3 together
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    assert not results[1][0][10:15].any()  # padding and the sample without keys give zeros


def _bf16_qkv(samples: int, n: int, m: int, seed: int = 0) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(samples, 2, length, 16, generator=generator).to(torch.bfloat16).requires_grad_()
        for length in (n, m, m)
    ]


def test_explicit_attention_is_as_exact_as_sdpa_in_bf16_with_gradients():
    """Float32 scores and products: outputs and gradients as close to float64 as SDPA's."""
    q, k, v = _bf16_qkv(3, 20, 7)
    q64, k64, v64 = (x.detach().double().requires_grad_() for x in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(q64, k64, v64)
    want.square().sum().backward()
    for attention in (explicit_attention, torch.nn.functional.scaled_dot_product_attention):
        for x in (q, k, v):
            x.grad = None
        got = attention(q, k, v)
        assert got.dtype == torch.bfloat16
        got.float().square().sum().backward()
        for a, b in ((got, want), (q.grad, q64.grad), (k.grad, k64.grad), (v.grad, v64.grad)):
            torch.testing.assert_close(a.double(), b, atol=2e-2, rtol=2e-2)


def test_batched_attention_chooses_explicit_for_short_bf16_on_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(layers, "explicit_attention", lambda q, k, v: calls.append(q.shape) or q)
    batched_attention(*_bf16_qkv(2, 12, 5))  # short, bf16: explicit
    assert len(calls) == 1
    q, k, v = (x.float() for x in _bf16_qkv(2, 12, 5))
    out = batched_attention(q, k, v)  # float32 keeps SDPA, bit for bit
    assert len(calls) == 1
    assert torch.equal(out, torch.nn.functional.scaled_dot_product_attention(q, k, v))
    monkeypatch.setattr(layers, "EXPLICIT_ATTENTION_MAX_SCORES", 12 * 5 - 1)
    batched_attention(*_bf16_qkv(2, 12, 5))  # too many scores: SDPA
    assert len(calls) == 1


def test_explicit_attention_multiplies_in_float32_under_autocast():
    """Autocast would run the products in bf16; explicit_attention turns it off inside."""
    q, k, v = _bf16_qkv(1, 30, 30, seed=3)
    plain = explicit_attention(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = explicit_attention(q, k, v)
    assert torch.equal(plain, autocast)


def test_padding_tokens_do_not_affect_others():
    model = make_model()
    samples = three_samples()
    clean = run(model, pack(samples))
    torch.manual_seed(123)
    padded = run(model, pack(samples, pad_video=17, pad_text=6))
    torch.testing.assert_close(padded[: len(clean)], clean, atol=ATOL, rtol=0)
    assert torch.isfinite(padded).all()


def test_padding_between_samples():
    model = make_model()
    samples = three_samples()
    a = pack(samples[:1], pad_video=4)
    b = pack(samples[1:])
    inputs = {key: torch.cat([a[key], b[key]]) for key in a}
    out = run(model, inputs)
    n_a = len(samples[0].tokens)
    torch.testing.assert_close(out[:n_a], run(model, pack(samples[:1])), atol=ATOL, rtol=0)
    torch.testing.assert_close(out[n_a + 4 :], run(model, b), atol=ATOL, rtol=0)


def test_non_contiguous_sample_raises():
    model = make_model()
    inputs = pack(three_samples())
    inputs["sample_ids"] = inputs["sample_ids"].flip(0).roll(3)  # splits a sample into two runs
    with pytest.raises(ValueError, match="more than one run"):
        run(model, inputs)


def test_bad_shapes_raise():
    model = make_model()
    inputs = pack(three_samples())
    with pytest.raises(ValueError, match="timesteps"):
        run(model, {**inputs, "timesteps": inputs["timesteps"][:-1]})
    with pytest.raises(ValueError, match="positions"):
        run(model, {**inputs, "positions": inputs["positions"].float()})
    with pytest.raises(ValueError, match="text_tokens"):
        run(model, {**inputs, "text_tokens": inputs["text_tokens"][:, :-1]})


# ------------------------------------------------------------------------------------------------
# RoPE
# ------------------------------------------------------------------------------------------------


def test_rope_split_like_wan():
    assert split_rope_dims(64) == (24, 20, 20)
    assert split_rope_dims(128) == (44, 42, 42)
    assert split_rope_dims(16) == (8, 4, 4)
    with pytest.raises(ValueError, match="rope_axes_dims"):
        DiTConfig(hidden=64, heads=4, rope_axes_dims=(8, 4, 2))


def test_rope_preserves_norms_and_depends_on_relative_position():
    torch.manual_seed(0)
    dims = (8, 4, 4)
    q, k = torch.randn(2, 1, 16), torch.randn(2, 1, 16)
    positions = torch.tensor([[3, 1, 4], [0, 5, 2]])
    rope = rope_angles(positions, dims, 10000.0)
    q_rot = apply_rope(q, rope)
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1))
    assert not torch.allclose(q_rot, q)

    def score(pos_q: Tensor, pos_k: Tensor) -> Tensor:
        rq = apply_rope(q[:1], rope_angles(pos_q[None], dims, 10000.0))
        rk = apply_rope(k[:1], rope_angles(pos_k[None], dims, 10000.0))
        return (rq * rk).sum()

    shift = torch.tensor([7, -2, 11])
    torch.testing.assert_close(
        score(positions[0], positions[1]), score(positions[0] + shift, positions[1] + shift)
    )
    assert not torch.allclose(score(positions[0], positions[1]), score(positions[0], positions[0]))


def test_shifting_all_positions_leaves_outputs_unchanged():
    model = make_model()
    samples = three_samples()
    inputs = pack(samples)
    out = run(model, inputs)
    shifted = run(model, {**inputs, "positions": inputs["positions"] + torch.tensor([4, 9, 2])})
    torch.testing.assert_close(shifted, out, atol=ATOL, rtol=0)
    swapped = run(model, {**inputs, "positions": inputs["positions"][:, [0, 2, 1]]})
    assert (swapped - out).abs().max() > 1e-3  # positions do matter


# ------------------------------------------------------------------------------------------------
# adaLN-Zero and per-token timesteps
# ------------------------------------------------------------------------------------------------


def test_fresh_model_outputs_exact_zeros():
    torch.manual_seed(0)
    model = DiT(CONFIG)
    out = run(model, pack(three_samples(), pad_video=2))
    assert torch.equal(out, torch.zeros_like(out))


def test_timesteps_act_per_token_within_their_sample():
    model = make_model()
    samples = three_samples()
    inputs = pack(samples)
    out = split_outputs(run(model, inputs), samples)
    timesteps = inputs["timesteps"].clone()
    n_a = len(samples[0].tokens)
    timesteps[:n_a] = torch.linspace(0.1, 0.9, n_a)  # sample A only
    changed = split_outputs(run(model, {**inputs, "timesteps": timesteps}), samples)
    assert (changed[0] - out[0]).abs().max() > 1e-3
    # the conditioning runs once per distinct timestep, so more distinct ones change the
    # projections' matmul shapes, and with them the rounding: equal to float tolerance
    for before, after in zip(out[1:], changed[1:], strict=True):
        torch.testing.assert_close(after, before, atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------
# Text conditioning
# ------------------------------------------------------------------------------------------------


def test_text_changes_only_its_own_sample():
    model = make_model()
    samples = three_samples()
    out = split_outputs(run(model, pack(samples)), samples)
    samples[0].text = torch.randn_like(samples[0].text)
    changed = split_outputs(run(model, pack(samples)), samples)
    assert (changed[0] - out[0]).abs().max() > 1e-3
    for before, after in zip(out[1:], changed[1:], strict=True):
        torch.testing.assert_close(after, before, atol=ATOL, rtol=0)


@pytest.mark.parametrize("backend", [AttentionBackend.SDPA_SEGMENTS, AttentionBackend.DENSE_MASK])
def test_sample_without_text(backend):
    model = make_model(backend)
    samples = three_samples()
    samples[1].text = samples[1].text[:0]
    packed = split_outputs(run(model, pack(samples)), samples)
    alone = run(model, pack([samples[1]]))  # M = 0 text tokens in the whole sequence
    assert torch.isfinite(alone).all()
    torch.testing.assert_close(packed[1], alone, atol=ATOL, rtol=0)
    with_text = run(model, pack([make_sample(2, (3, 3, 3), text_len=3, seed=2)]))
    assert (with_text - alone).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------------
# Pooled text vector
# ------------------------------------------------------------------------------------------------


def test_pool_text_means_per_sample():
    text = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 10.0], [7.0, 7.0]])
    text_ids = torch.tensor([2, 2, -1, 0])  # sample 1 has no text, one padding token
    sample_ids = torch.tensor([0, 0, 1, 2, 2, -1])
    means, index = pool_text(text, text_ids, sample_ids)
    pooled = means[index]
    torch.testing.assert_close(pooled[0], torch.tensor([7.0, 7.0]))
    torch.testing.assert_close(pooled[2], torch.zeros(2))  # dropped caption: zeros
    torch.testing.assert_close(pooled[3], torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(pooled[5], torch.zeros(2))  # padding reads the zero row


def test_pooled_text_starts_as_the_model_without_it():
    plain = make_model()
    pooled = DiT(dataclasses.replace(CONFIG, pooled_text=True)).eval()
    missing = set(pooled.state_dict()) - set(plain.state_dict())
    assert missing and all(k.startswith("pooled_text_embedder.") for k in missing)
    pooled.load_state_dict(plain.state_dict(), strict=False)
    inputs = pack(three_samples(), pad_video=2, pad_text=3)
    torch.testing.assert_close(run(pooled, inputs), run(plain, inputs), atol=0, rtol=0)


def test_pooled_text_reaches_every_token_through_adaln():
    model = make_model(pooled_text=True)
    with torch.no_grad():  # close the text path through cross-attention
        for block in model.blocks:
            block.cross_attn.proj.weight.zero_()
            block.cross_attn.proj.bias.zero_()
    samples = three_samples()
    out = split_outputs(run(model, pack(samples)), samples)
    samples[0].text = samples[0].text + 1.0  # another mean
    changed = split_outputs(run(model, pack(samples)), samples)
    assert (changed[0] - out[0]).abs().max() > 1e-3
    for before, after in zip(out[1:], changed[1:], strict=True):
        torch.testing.assert_close(after, before, atol=ATOL, rtol=0)


def test_pooled_text_pack_equals_each_sample_alone():
    model = make_model(pooled_text=True)
    samples = three_samples()
    samples[1].text = samples[1].text[:0]  # a dropped caption among the others
    packed = split_outputs(run(model, pack(samples, pad_video=4, pad_text=5)), samples)
    for sample, out in zip(samples, packed, strict=True):
        torch.testing.assert_close(out, run(model, pack([sample])), atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------
# Gradients
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooled_text", [False, True])
def test_gradients_reach_every_parameter(pooled_text):
    model = make_model(pooled_text=pooled_text).train()
    samples = three_samples()
    inputs = pack(samples, pad_video=3, pad_text=2)
    out = model(**inputs)
    loss = out[inputs["sample_ids"] >= 0].pow(2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_fresh_model_gradients_are_finite():
    torch.manual_seed(0)
    model = DiT(CONFIG)
    inputs = pack(three_samples(), pad_video=3)
    target = torch.randn(len(inputs["tokens"]), CONFIG.in_dim)
    (model(**inputs) - target).pow(2).mean().backward()
    assert model.final_layer.linear.weight.grad.abs().max() > 0  # adaLN-Zero still learns
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------------------
# Presets, parameter and FLOP counts
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pooled_text", [False, True])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_parameter_count_matches_model(name, pooled_text):
    config = dataclasses.replace(PRESETS[name], pooled_text=pooled_text)
    with torch.device("meta"):  # no memory allocated, even for xl
        model = DiT(config)
    assert count_parameters(config) == sum(p.numel() for p in model.parameters())


def test_preset_sizes(capsys):
    millions = {name: count_parameters(config) / 1e6 for name, config in PRESETS.items()}
    assert millions["debug"] < 1
    assert 10 <= millions["tiny"] <= 20
    assert 80 <= millions["small"] <= 150
    assert 300 <= millions["base"] <= 500
    assert 800 <= millions["xl"] <= 1300
    print_presets()
    printed = capsys.readouterr().out
    assert all(name in printed for name in PRESETS)
    assert f"{count_parameters(PRESETS['xl']):,d}" in printed


def test_flops_per_token_close_to_six_times_params_for_short_sequences():
    config = PRESETS["small"]
    flops = flops_per_token(config, seq_len=1, text_len=1)  # every weight used once per token
    assert 0.9 < flops / (6 * count_parameters(config)) < 1.1
    # attention grows linearly with the sample's length (per-sample work amortizes away)
    extra = flops_per_token(config, seq_len=8192) - flops_per_token(config, seq_len=4096)
    assert extra == pytest.approx(3 * config.depth * 4 * 4096 * config.hidden, rel=1e-3)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        DiTConfig(hidden=100, heads=3)
    with pytest.raises(ValueError, match="attention_backend"):
        DiTConfig(attention_backend="fast")
    assert DiTConfig(attention_backend="flex").attention_backend is AttentionBackend.FLEX
    assert get_preset("tiny", depth=2).depth == 2
    with pytest.raises(ValueError, match="unknown DiT preset"):
        get_preset("huge")


def test_bf16_autocast_forward_backward():
    model = make_model().train()
    inputs = pack(three_samples(), pad_video=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**inputs)
    assert out.dtype == torch.bfloat16
    out.float().pow(2).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(out.float(), run(model, inputs), atol=0.1, rtol=0.1)


# ------------------------------------------------------------------------------------------------
# Compiled FLEX (slow: torch.compile on CPU)
# ------------------------------------------------------------------------------------------------


@slow
def test_compiled_flex_blocks_match_sdpa():
    """Compile applied from outside, per block. CPU: forward only (flex has no CPU backward)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    samples = three_samples()
    inputs = {k: v.to(device) for k, v in pack(samples, pad_video=5, pad_text=4).items()}
    real = inputs["sample_ids"] >= 0
    results = []
    for backend in (AttentionBackend.SDPA_SEGMENTS, AttentionBackend.FLEX):
        model = make_model(backend).to(device).train()
        if backend is AttentionBackend.FLEX:
            for block in model.blocks:
                block.compile()
        with torch.set_grad_enabled(device == "cuda"):
            out = model(**inputs)
        if device == "cuda":
            out[real].pow(2).mean().backward()
            results.append((out[real].detach(), model.x_embedder.weight.grad.clone()))
        else:
            results.append((out[real], None))
    (out_sdpa, grad_sdpa), (out_flex, grad_flex) = results
    torch.testing.assert_close(out_flex, out_sdpa, atol=1e-4, rtol=0)
    if device == "cuda":
        torch.testing.assert_close(grad_flex, grad_sdpa, atol=1e-4, rtol=1e-3)
