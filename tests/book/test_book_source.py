"""satlib.book.source: a chapter shows satlib's own source, whole or with named statements left out."""

from __future__ import annotations

import pytest

from satlib.book.source import excerpt, source


def step(batch, model, sums, ddp):
    """A stand-in for a training step."""
    if batch is None:
        return sums
    out = model(batch)
    if ddp:
        out = out * 2
        sums += 1
    return out


def test_source_is_the_dedented_source():
    text = source(step)
    assert text.startswith("def step(batch, model, sums, ddp):\n") and text.endswith("    return out\n")


def test_an_excerpt_leaves_out_whole_statements_and_says_why():
    text = excerpt(step, omit={"if batch is None": "an empty batch", "if ddp": "several processes"})
    assert text.splitlines() == ["def step(batch, model, sums, ddp):",
                                 '    """A stand-in for a training step."""',
                                 "    ...  # an empty batch",
                                 "    out = model(batch)",
                                 "    ...  # several processes",
                                 "    return out"]


def test_a_name_that_matches_no_statement_stops_the_excerpt():
    # the code changed under the chapter: it must not print another excerpt than the prose explains
    with pytest.raises(ValueError, match=r"step: no statement starts with \['if clock.out_of_time\(\)'\]"):
        excerpt(step, omit={"if ddp": "several processes", "if clock.out_of_time()": "the time cap"})


def test_a_statement_inside_one_left_out_is_not_named_twice():
    text = excerpt(step, omit={"if ddp": "several processes", "sums += 1": "counting"})
    assert text.count("...") == 1 and "counting" not in text
