"""The book's cache of training runs: a chapter asks for the run of a config, and gets the finished run of
exactly that config, trained now only when no chapter has trained it before.

A run is keyed by its full config (minus the output folder), the device and the smoke switch, so a chapter
that asks for a run another chapter trained gets that run, and a changed recipe never shows a stale one.

Citing a run: a chapter that shows a cached run prints `run.cite()` (one line, `RUN_CITATION`:
"run <model>-<12 hex digits of its key>", the run's folder name) in a cell marked
`# NBVAL_CHECK_OUTPUT`. The id does not depend on where the cache is (a data folder inside it is keyed
by its place in the cache), so tests/book/test_book_runs.py recomputes, without training, the id of
every recipe a chapter uses (`settings.run_dir(settings.shared_recipe()).name`, ...) and fails when a
chapter shows another run, or uses the shared run without citing it (`cited_runs` reads the lines back).
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import json
import multiprocessing
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from satlib.book.probe import EPOCH_MAPS, Probe
from satlib.build import load
from satlib.checkpoint import load_checkpoint
from satlib.config import Config, config_from_dict
from satlib.files import atomic_write_text
from satlib.info import LoadedModel
from satlib.train import train

FINISHED = "finished.json"  # written into a run's folder once train() returned; holds the run's key
RUN_CITATION = re.compile(r"^run (?P<id>[\w.]+-[0-9a-f]{12})$", re.M)  # `BookRun.cite`'s line
CACHE_PLACEHOLDER = "$SATLIB_CACHE"  # a run key's stand-in for the cache folder
CPU_THREADS = 1  # every CPU run trains on one torch thread, in the chapter's kernel or a worker: the same numbers


class RunStoppedEarly(RuntimeError):
    """A book run ended before its recipe's last step (train.time_budget): it is not cached as finished."""


@dataclass(frozen=True)
class BookRun:
    """A finished training run in the book's cache: its folder and how to load it."""

    folder: Path
    trained: bool  # True: this call trained it; False: it came from the cache
    device: torch.device

    @property
    def checkpoint(self) -> Path:
        return self.folder / "checkpoint.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    def load(self, *, best: bool = False) -> LoadedModel:
        """The run's model in eval mode on the run's device, and its `ModelInfo` (threshold, config, metrics...)."""
        return load(self.best if best else self.checkpoint, device=self.device)

    @property
    def id(self) -> str:
        """The run's name in the cache: `<model>-<12 hex digits of its key>`."""
        return self.folder.name

    def cite(self) -> str:
        """The one line a chapter prints to say which run it shows (`RUN_CITATION`; see the module doc)."""
        return f"run {self.id}"

    def config(self) -> Config:
        """The resolved config the run was trained with (its config.yaml)."""
        path = self.folder / "config.yaml"
        return config_from_dict(yaml.safe_load(path.read_text()), source=str(path))

    def history(self) -> list[dict]:
        """Every epoch's record, from metrics.json."""
        return json.loads((self.folder / "metrics.json").read_text())["history"]

    def epoch_maps(self) -> dict:
        """The probe images' maps after every epoch (`satlib.book.probe.Probe`): "indices" (into the test
        split, see `probe_indices`), "sat" and "cam" (epochs, images, rows, cols)."""
        return load_checkpoint(self.folder / EPOCH_MAPS)


@dataclass(frozen=True)
class RunCache:
    """The runs of one device and smoke switch, kept in `folder` (`$SATLIB_CACHE/book/runs`)."""

    folder: Path
    cache_root: Path  # $SATLIB_CACHE: a data folder inside it is keyed by its place there
    device: torch.device
    smoke: bool = False

    def key(self, config: Config) -> dict:
        """What identifies a run: the full config on this device without its output folder, and the smoke switch.

        A data folder inside the cache (the stand-in) is keyed by its place there ("$SATLIB_CACHE/book/..."),
        so a run's id is the same in every cache.
        """
        resolved = config.to_dict()
        resolved["train"] = {**{k: v for k, v in resolved["train"].items() if k != "out"}, "device": str(self.device)}
        root = Path(resolved["data"]["root"]).expanduser()
        if root.is_relative_to(self.cache_root):
            resolved["data"]["root"] = f"{CACHE_PLACEHOLDER}/{root.relative_to(self.cache_root).as_posix()}"
        return {"config": resolved, "smoke": self.smoke}

    def run_dir(self, config: Config) -> Path:
        """The folder of `config`'s run: `<folder>/<model>-<12 hex digits of its key>`."""
        key = json.dumps(self.key(config), sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return self.folder / f"{config.model.name}-{digest}"

    def finished(self, config: Config) -> BookRun | None:
        """The finished run of exactly `config` (its key, its probe maps), or None."""
        folder = self.run_dir(config)
        marker = folder / FINISHED
        if (marker.is_file() and json.loads(marker.read_text()) == json.loads(json.dumps(self.key(config)))
                and (folder / EPOCH_MAPS).is_file()):
            return BookRun(folder, trained=False, device=self.device)
        return None

    def run(self, config: Config, *, on_epoch: Callable[[dict], None] | None = None,
            quiet: bool = True) -> BookRun:
        """The finished run of exactly `config` on this device, trained now unless the cache has it.

        Sets `config.train.device` to the cache's device and `config.train.out` to the run's folder (so an
        `on_epoch` callback finds the epoch's checkpoint there); trains a copy, so the caller's config is not
        changed by training (e.g. `model.num_classes` read from the data). `quiet` (default) keeps the epoch
        log out of the chapter: it prints what it needs from the run.
        """
        config.train.device = str(self.device)
        folder = self.run_dir(config)
        config.train.out = str(folder)
        with self._lock(folder):  # another kernel or worker training this very run: wait for it, then reuse it
            cached = self.finished(config)
            if cached is not None:
                return cached
            shutil.rmtree(folder, ignore_errors=True)  # an interrupted run of this key: start over
            with _cpu_threads(self.device):
                probe = Probe(config, self.device)

                def after_epoch(record: dict) -> None:
                    probe.record(folder)
                    if on_epoch is not None:
                        on_epoch(record)

                record = train(copy.deepcopy(config), progress=False, quiet=quiet, on_epoch=after_epoch)
            if record.get("stopped_early"):
                raise RunStoppedEarly(f"{folder.name}: {record.get('stop_reason') or 'stopped before its last step'}"
                                      f"; not cached as finished (set train.time_budget=0 to train it in full)")
            atomic_write_text(folder / FINISHED, json.dumps(self.key(config), indent=1) + "\n")
        return BookRun(folder, trained=True, device=self.device)

    def run_all(self, configs: Sequence[Config], *, jobs: int | None = None) -> list[BookRun]:
        """The finished runs of `configs`, in order; the ones the cache lacks are trained in `jobs` worker
        processes at once (default: on a CPU one a core, at most 4, each on one thread; on a GPU one, here).

        A run's numbers do not depend on `jobs`: every CPU run trains on `CPU_THREADS` threads."""
        for config in configs:
            config.train.device = str(self.device)
            config.train.out = str(self.run_dir(config))
        missing = list({str(self.run_dir(c)): c for c in configs if self.finished(c) is None}.values())
        if jobs is None:
            jobs = min(4, len(os.sched_getaffinity(0))) if self.device.type == "cpu" else 1
        trained = set()
        if missing and jobs > 1 and len(missing) > 1:
            context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state of the chapter's kernel
            with ProcessPoolExecutor(max_workers=min(jobs, len(missing)), mp_context=context) as pool:
                trained = {run.folder for run in pool.map(_train_in_worker, [self] * len(missing), missing)
                           if run.trained}
        runs = []
        for config in configs:
            run = self.run(config)
            runs.append(BookRun(run.folder, trained=run.trained or run.folder in trained, device=self.device))
            trained.discard(run.folder)  # a config asked for twice was trained once
        return runs

    @contextmanager
    def _lock(self, folder: Path) -> Iterator[None]:
        """An exclusive lock on `folder`'s run (a file beside it), held while it is looked up or trained."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(folder.with_name(folder.name + ".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _train_in_worker(cache: RunCache, config: Config) -> BookRun:
    """A worker process's job in `RunCache.run_all`."""
    return cache.run(config)


@contextmanager
def _cpu_threads(device: torch.device) -> Iterator[None]:
    """On a CPU, torch on `CPU_THREADS` threads for the block (restored after it)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cited_runs(text: str) -> list[str]:
    """The run ids a chapter's output cites, in order: every `BookRun.cite` line in `text`."""
    return [match["id"] for match in RUN_CITATION.finditer(text)]
