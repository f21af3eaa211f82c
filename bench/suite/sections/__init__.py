"""The suite's sections, one module each; `SECTION_RUNS` maps a section name to its run function."""

from __future__ import annotations

from typing import Callable

from suite.harness import Suite
from suite.recipes import CUB, IMAGENET
from suite.sections.data import section_data
from suite.sections.env import section_env
from suite.sections.evaluator import section_eval
from suite.sections.model import section_model
from suite.sections.profiling import section_profile
from suite.sections.training import section_train

SECTION_RUNS: dict[str, Callable[[Suite, dict], None]] = {
    "env": section_env, "model": section_model, "eval": section_eval, "data": section_data,
    "train_cub": section_train(CUB), "train_imagenet": section_train(IMAGENET), "profile": section_profile}
