"""A chapter's interactive figures: `explore(draw, **controls)` shows a figure and, in a running notebook,
controls that redraw it.

ipywidgets (the `book` extra: pip install -e '.[book]') is imported when `explore` is called, so the rest
of satlib.book, and satlib, work without it.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # a live control; stripped from the saved chapters


def figure_png(figure: Figure) -> bytes:
    """`figure` as PNG bytes (cropped to its contents); the figure is closed."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def explore(draw: Callable[..., Figure], **controls) -> dict:
    """A figure with controls: `draw(**values)` returns a matplotlib figure for one choice of `values`.

    `controls` are what `ipywidgets.interact` takes (a list of options, a `(min, max, step)` tuple, a
    widget, ...). The figure for the controls' initial values (as ipywidgets picks them: the middle of a
    range, the first option) is shown as a plain image: that is what the built book shows (the saved
    chapters keep no live widgets). In a running notebook the controls are shown under it and every
    change redraws the figure in place. Returns the values drawn first.
    """
    import ipywidgets as widgets  # optional (the `book` extra): imported only where a figure gets controls
    from IPython.display import Image, display

    panel = widgets.interactive(lambda **values: None, **controls)
    first = dict(panel.kwargs)
    handle = display(Image(figure_png(draw(**first))), display_id=True)

    def changed(_) -> None:
        image = Image(figure_png(draw(**panel.kwargs)))
        if handle is not None:  # None outside IPython (display ids need a frontend)
            handle.update(image)

    inputs = [child for child in panel.children if not isinstance(child, widgets.Output)]
    for child in inputs:
        child.observe(changed, names="value")
    display(widgets.VBox(inputs))
    return first
