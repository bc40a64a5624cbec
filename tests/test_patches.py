"""Tests for kinema.patches: spacetime patchify round trips and Patch n' Pack (tiny tensors)."""

from __future__ import annotations

import pytest
import torch

from kinema.patches import (
    PAD_ID,
    pack_into_budget,
    pack_sequences,
    packing_waste,
    padding_waste,
    patch_grid,
    patchify,
    segment_ranges,
    unpack,
    unpatchify,
)


def latents(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


@pytest.mark.parametrize(
    ("shape", "patch"),
    [
        ((4, 3, 4, 6), (1, 2, 2)),  # time patch 1
        ((2, 4, 4, 4), (2, 2, 2)),
        ((3, 1, 2, 8), (1, 1, 4)),  # single latent frame (an image)
        ((1, 6, 3, 5), (3, 3, 5)),  # one patch per frame
    ],
)
def test_patchify_round_trip_is_exact(shape: tuple[int, ...], patch: tuple[int, int, int]) -> None:
    x = latents(shape)
    tokens, positions = patchify(x, patch)
    C, t, h, w = shape
    grid = (t // patch[0], h // patch[1], w // patch[2])
    assert tokens.shape == (grid[0] * grid[1] * grid[2], C * patch[0] * patch[1] * patch[2])
    assert positions.dtype == torch.long
    assert torch.equal(unpatchify(tokens, grid, C, patch), x)


def test_positions_are_grid_coordinates_and_tokens_hold_their_patch() -> None:
    x = latents((2, 4, 4, 6))
    patch = (2, 2, 3)
    tokens, positions = patchify(x, patch)  # grid (2, 2, 2)
    assert positions.tolist() == [[t, h, w] for t in range(2) for h in range(2) for w in range(2)]
    for token, (t, h, w) in zip(tokens, positions.tolist(), strict=True):
        block = x[:, 2 * t : 2 * t + 2, 2 * h : 2 * h + 2, 3 * w : 3 * w + 3]
        assert torch.equal(token, block.reshape(-1))  # features laid out (c pt ph pw)


def test_bad_sizes_name_the_size_and_nearest_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"h=5 is not a multiple of patch 2 \(nearest valid: 4 or 6\)"
    ):
        patchify(latents((2, 3, 5, 4)), (1, 2, 2))
    with pytest.raises(ValueError, match=r"t=1 .* patch 2 \(nearest valid: 2\)"):
        patch_grid((1, 4, 4), (2, 2, 2))
    with pytest.raises(ValueError, match="patch must be three positive ints"):
        patchify(latents((2, 2, 2, 2)), (0, 1, 1))
    tokens, _ = patchify(latents((2, 2, 4, 4)), (1, 2, 2))
    with pytest.raises(ValueError, match="expected"):
        unpatchify(tokens, (2, 2, 3), 2, (1, 2, 2))


def make_items() -> list[tuple[torch.Tensor, torch.Tensor]]:
    shapes = [(3, 2, 4, 4), (3, 1, 2, 4), (3, 3, 2, 2)]  # 8, 2, 3 tokens with patch (1, 2, 2)
    return [patchify(latents(s, seed=i), (1, 2, 2)) for i, s in enumerate(shapes)]


def test_pack_unpack_round_trip_with_sample_ids_and_padding() -> None:
    items = make_items()
    packed = pack_sequences(items, pad_to_multiple=8)
    assert packed.lengths == [8, 2, 3]
    assert packed.pad == 3 and packed.num_tokens == 16
    assert packed.grids == [(2, 2, 2), (1, 1, 2), (3, 1, 1)]
    expected_ids = [0] * 8 + [1] * 2 + [2] * 3 + [PAD_ID] * 3
    assert packed.sample_ids.tolist() == expected_ids
    assert torch.equal(packed.tokens[-3:], torch.zeros(3, 12))
    assert segment_ranges(packed.sample_ids) == [(0, 8, 0), (8, 10, 1), (10, 13, 2), (13, 16, -1)]
    for (tokens, positions), back, pos_back in zip(
        items, unpack(packed, packed.tokens), unpack(packed, packed.positions), strict=True
    ):
        assert torch.equal(back, tokens) and torch.equal(pos_back, positions)
    doubled = unpack(packed, packed.tokens[:, :5] * 2)  # other feature width D'
    assert torch.equal(doubled[1], items[1][0][:, :5] * 2)
    with pytest.raises(ValueError, match="values have 13 tokens"):
        unpack(packed, packed.tokens[:13])


def test_pack_without_padding_and_bad_items() -> None:
    packed = pack_sequences(make_items())
    assert packed.pad == 0 and PAD_ID not in packed.sample_ids.tolist()
    tokens, positions = make_items()[0]
    with pytest.raises(ValueError, match="at least one"):
        pack_sequences([])
    with pytest.raises(ValueError, match=r"item 1: tokens must be non-empty \(n, 12\)"):
        pack_sequences([(tokens, positions), (tokens[:, :4], positions)])
    with pytest.raises(ValueError, match=r"item 0: positions must be \(8, 3\)"):
        pack_sequences([(tokens, positions[:5])])


def test_first_fit_decreasing_known_case_and_waste() -> None:
    lengths = [5, 3, 8, 2, 4, 6]
    bins = pack_into_budget(lengths, budget=10)
    # 8 -> new; 6 -> new; 5 -> new; 4 joins 6; 3 joins 5; 2 joins 8
    assert bins == [[2, 3], [5, 4], [0, 1]]
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert packing_waste(bins, lengths, 10) == pytest.approx(2 / 30)
    assert padding_waste([3, 5], 10) == pytest.approx(0.2)


def test_pack_into_budget_respects_budget_on_random_lengths() -> None:
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(1, 50, (40,), generator=g).tolist()
    bins = pack_into_budget(lengths, budget=64)
    assert sorted(i for b in bins for i in b) == list(range(40))
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert len(bins) >= -(-sum(lengths) // 64)
    assert 0.0 <= packing_waste(bins, lengths, 64) < 0.5
    with pytest.raises(ValueError, match=r"sample 1 has 70 tokens; valid lengths are 1\.\.64"):
        pack_into_budget([3, 70], budget=64)
    with pytest.raises(ValueError, match="capacity"):
        padding_waste([6, 6], 10)
