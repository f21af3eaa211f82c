"""Watch a run in TensorBoard: with `train.tensorboard: true`, rank 0 writes `train.out/tensorboard/`.

    satlib train --config cub train.tensorboard=true ...
    tensorboard --logdir runs/                      # needs the extra: pip install satlib[tensorboard]

What it writes (metrics.json stays the source of truth; these are views of the same numbers):

    train/loss, train/lr        every train.log_every optimizer steps: the epoch's running mean loss so far
                                (the host sync the progress bar already makes) and the learning rate
    epoch/<key>                 each epoch's record: loss, loss_cls, loss_area, loss_norm, lr, train_top1
    eval/<key>                  each evaluation's metrics (gt_known, top1_loc, maxboxacc, best_threshold, ...)
    maps                        each evaluation: a grid of the same test images spread over the split, the
                                scored map as a heatmap, the predicted box (green) at the evaluation's best
                                threshold, the GT boxes (red)

The x axis is the optimizer step. Without the package a run with the flag stops at its start, on every
rank, with one line saying how to install it (`require_tensorboard`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.utils import draw_bounding_boxes, make_grid

from satlib.config import Config
from satlib.data import WSOLDataset, collate, denormalize
from satlib.evaluate import scored_maps
from satlib.evaluation import boxes_from_maps, overlay

INSTALL = "train.tensorboard: true needs the tensorboard package: pip install satlib[tensorboard]"
GRID_IMAGES = 8
SCALARS = ("loss", "loss_cls", "loss_area", "loss_norm", "lr", "train_top1")  # an epoch record's training numbers


def require_tensorboard() -> None:
    """A RuntimeError with the install line when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
    except ImportError:
        raise RuntimeError(INSTALL) from None


def open_board(config: Config, test_set: WSOLDataset, out: str | Path, *, master: bool) -> RunBoard | None:
    """With `train.tensorboard`: the package checked on every rank (`require_tensorboard`), and rank 0's board
    writing `out`/tensorboard; else None."""
    if not config.train.tensorboard:
        return None
    require_tensorboard()
    return RunBoard(Path(out) / "tensorboard", test_set, protocol=config.eval.protocol) if master else None


class RunBoard:
    """One run's TensorBoard writer: scalars per logged step and per epoch, metrics and a map grid per evaluation."""

    def __init__(self, folder: str | Path, test_set: WSOLDataset, *, protocol: str, num_images: int = GRID_IMAGES):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter  # imported with the package it needs

        self.writer = SummaryWriter(log_dir=str(folder))
        self.protocol, self.img_size = protocol, test_set.img_size
        num = min(num_images, len(test_set))
        self.batch = collate([test_set[i * len(test_set) // num] for i in range(num)])
        self.normalization = test_set.normalization

    def step(self, step: int, *, loss: float, lr: float) -> None:
        """The epoch's running mean loss and the learning rate at optimizer step `step`."""
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, record: dict, model: nn.Module) -> None:
        """An epoch's record: its training numbers, and, when it was evaluated, its metrics and the map grid."""
        step = record["step"]
        for key in SCALARS:
            self.writer.add_scalar(f"epoch/{key}", record[key], step)
        if "gt_known" in record:
            for key, value in record.items():
                if key not in SCALARS and key not in ("epoch", "step", "time") and _is_number(value):
                    self.writer.add_scalar(f"eval/{key}", value, step)
            if self.batch is not None:  # None: every grid image was unreadable (data.skip_bad)
                self.writer.add_image("maps", self.map_grid(model, record["best_threshold"]), step)
        self.writer.flush()

    @torch.no_grad()
    def map_grid(self, model: nn.Module, threshold: float) -> torch.Tensor:
        """(3, H, W) float grid: each image with its scored map, predicted box (green) and GT boxes (red)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        labels = self.batch["labels"].to(device)
        maps = scored_maps(model(self.batch["images"].to(device)), labels).float().cpu()
        model.train(was_training)
        boxes = boxes_from_maps(maps, [threshold], self.img_size, protocol=self.protocol)[:, 0]
        images = denormalize(self.batch["images"], *self.normalization)
        tiles = []
        for image, loc_map, box, gt in zip(images, maps, boxes, self.batch["boxes"]):
            tile = torch.from_numpy(overlay(image, loc_map, box)).permute(2, 0, 1).float()
            corners = torch.stack([gt[:, 0], gt[:, 1], (gt[:, 2] - 1).clamp(min=gt[:, 0]),
                                   (gt[:, 3] - 1).clamp(min=gt[:, 1])], dim=1)
            tiles.append(draw_bounding_boxes(tile, corners, colors=(255, 0, 0), width=2) if len(gt) else tile)
        return make_grid(tiles, nrow=4, padding=2, pad_value=1.0)

    def close(self) -> None:
        self.writer.close()


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
