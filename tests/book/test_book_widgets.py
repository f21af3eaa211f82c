"""satlib.book.widgets: a figure with controls, shown as a plain image first and redrawn on every change."""

import pytest

from satlib.book import explore


def test_explore_draws_the_initial_values_then_redraws_on_every_change():
    widgets = pytest.importorskip("ipywidgets", reason="the book extra: pip install -e '.[book]'")
    import matplotlib.pyplot as plt

    drawn = []

    def draw(k, color):
        drawn.append((k, color))
        figure, ax = plt.subplots(figsize=(1, 1))
        ax.plot(range(k), color=color)
        return figure

    slider = widgets.IntSlider(value=3, min=1, max=9)
    assert explore(draw, k=slider, color=["red", "blue"]) == {"k": 3, "color": "red"}
    assert drawn == [(3, "red")]
    slider.value = 7
    assert drawn[-1] == (7, "red")
    assert plt.get_fignums() == []  # every figure drawn was closed after being shown
