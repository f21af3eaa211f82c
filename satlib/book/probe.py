"""The probe images of a book run: a few test images mapped after every epoch, so a chapter can show how a
run's maps formed without training it again.

    probe = Probe(config, device)    # before training
    probe.record(run_folder)         # after each epoch: appends the epoch's maps to <run>/epoch_maps.pt
"""

from __future__ import annotations

from pathlib import Path

import torch

from satlib.build import build_datasets, load, prepare_data
from satlib.checkpoint import save_checkpoint
from satlib.config import Config
from satlib.data import collate

EPOCH_MAPS = "epoch_maps.pt"  # in a run's folder: {"indices", "sat", "cam"} (see `Probe`)


def probe_indices(test_set) -> list[int]:
    """The test images every book run maps after each epoch: the first two of each of the first four
    classes (for test splits listed class by class, as CUB's and the synthetic sets' are)."""
    per_class = len(test_set) // test_set.num_classes
    return [c * per_class + i for c in range(min(4, test_set.num_classes)) for i in (0, 1)]


class Probe:
    """Maps of the `probe_indices` test images after every epoch of a run, saved as <run>/epoch_maps.pt:
    "indices" (into the test split), "sat" and "cam" (epochs, images, rows, cols), the CAM being the conv
    head's map of the GT class."""

    def __init__(self, config: Config, device: torch.device) -> None:
        _, test_set = build_datasets(config, prepare_data(config), train=False)
        self.indices = probe_indices(test_set)
        batch = collate([test_set[i] for i in self.indices])
        self.images, self.labels = batch["images"].to(device), batch["labels"].to(device)
        self.device, self.sat, self.cam = device, [], []

    @torch.no_grad()
    def record(self, folder: Path) -> None:
        """Map the probe images with the epoch's checkpoint in `folder`; the run's random streams are left
        untouched."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            model = load(folder / "checkpoint.pt", device=self.device).model
            out = model(self.images)
        self.sat.append(out.loc_map.float().cpu())
        self.cam.append(out.class_maps[torch.arange(len(self.labels)), self.labels].float().cpu())
        save_checkpoint(folder / EPOCH_MAPS, {"indices": torch.tensor(self.indices),
                                              "sat": torch.stack(self.sat), "cam": torch.stack(self.cam)})
