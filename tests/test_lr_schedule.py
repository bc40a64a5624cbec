import itertools

import pytest

from kinema.lr_schedule import learning_rate


def test_warmup_then_cosine_over_the_whole_run():
    lrs = [learning_rate(s, 20, 1e-3, 4, 0.1) for s in range(21)]
    assert lrs[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert all(a > b for a, b in itertools.pairwise(lrs[4:]))
    assert lrs[20] == pytest.approx(1e-4)


def test_warmup_stable_decay_holds_the_peak_until_the_last_decay_steps():
    lrs = [learning_rate(s, 100, 1e-3, 10, 0.1, decay_steps=20) for s in range(101)]
    assert lrs[9] == pytest.approx(1e-3)
    assert lrs[10:81] == pytest.approx([1e-3] * 71)  # held through step 80
    assert all(a > b for a, b in itertools.pairwise(lrs[80:]))
    assert lrs[90] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half way down the cosine
    assert lrs[100] == pytest.approx(1e-4)


def test_a_decay_branch_of_a_wsd_run_matches_the_run_until_it_branches():
    """Resuming a copy of a long WSD run with steps = k + decay_steps decays from step k."""
    long_run = [learning_rate(s, 10_000, 2e-3, 200, 0.1, decay_steps=500) for s in range(3000)]
    branch = [learning_rate(s, 3000 + 500, 2e-3, 200, 0.1, decay_steps=500) for s in range(3500)]
    assert branch[:3000] == pytest.approx(long_run)
    assert branch[3499] < 2.1e-4


def test_decay_longer_than_the_run_starts_after_the_warmup():
    wsd = [learning_rate(s, 50, 1e-3, 10, 0.0, decay_steps=500) for s in range(51)]
    cosine = [learning_rate(s, 50, 1e-3, 10, 0.0) for s in range(51)]
    assert wsd == pytest.approx(cosine)
