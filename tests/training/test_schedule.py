import pytest

from salad.training.schedule import decay_start, linear_decay, wsd_factor


def test_warmup_is_linear_to_peak():
    f = [wsd_factor(s, 100, 10, 0.2) for s in range(100)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert all(x == 1.0 for x in f[10:80])


def test_decay_is_linear_to_zero_over_last_fraction():
    assert decay_start(100, 0.2) == 80
    f = [wsd_factor(s, 100, 10, 0.2) for s in range(80, 100)]
    diffs = [a - b for a, b in zip(f, f[1:])]
    assert diffs == pytest.approx([diffs[0]] * len(diffs))
    # one more step would reach exactly zero
    assert f[-1] - diffs[0] == pytest.approx(0.0)
    assert f[0] < 1.0


def test_warmup_longer_than_stable_phase_is_cut():
    f = [wsd_factor(s, 10, 100, 0.5) for s in range(10)]
    assert max(f) == 1.0 and f[4] == 1.0


def test_out_of_range_step_raises():
    with pytest.raises(ValueError):
        wsd_factor(10, 10, 1, 0.2)


def test_linear_decay_goes_from_the_peak_to_zero_without_warmup():
    steps = 7
    # Stage I's decay formula over the whole run: the rate would reach zero one step after the last
    assert [linear_decay(s, steps) for s in range(steps)] == pytest.approx([(steps - s) / (steps + 1)
                                                                             for s in range(steps)])
    with pytest.raises(ValueError):
        linear_decay(steps, steps)
