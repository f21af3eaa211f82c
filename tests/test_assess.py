"""satlib.assess: which test images a figure shows."""

from satlib.assess import spread_indices


def test_spread_indices_start_at_zero_and_step_by_the_exact_fraction():
    """i * size // num: sizes where the near misses differ (i * (size // num), a linspace that ends on the last
    index, rounding i * size / num)."""
    assert spread_indices(10, 4) == [0, 2, 5, 7]  # i * (10 // 4): 0, 2, 4, 6; linspace: 0, 3, 6, 9; round: ..., 8
    assert spread_indices(11, 3) == [0, 3, 7]  # i * (11 // 3): 0, 3, 6; round(i * 11 / 3): 0, 4, 7
    assert spread_indices(360, 8) == [0, 45, 90, 135, 180, 225, 270, 315]
    assert spread_indices(5, 8) == [0, 1, 2, 3, 4]  # fewer images than asked: all of them
    assert spread_indices(0, 8) == []
