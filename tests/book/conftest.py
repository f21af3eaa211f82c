"""One offline build of the book per test session, shared by the build and browser tests."""

import pytest

from book_helpers import BuiltBook, build_book


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> BuiltBook:
    return build_book(tmp_path_factory.mktemp("book"))
