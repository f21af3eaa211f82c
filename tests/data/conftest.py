from pathlib import Path

import pytest

from data_fixtures import make_cub


@pytest.fixture
def cub_root(tmp_path: Path) -> Path:
    return make_cub(tmp_path / "CUB_200_2011")
