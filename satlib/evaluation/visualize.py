"""Figures: an image with its localization map, predicted and GT boxes, and the IoU in the title.

matplotlib is imported by the functions that draw (it is heavy, and `import satlib` does not need it).
Colours follow the official evaluator's saved images: the
map as a jet heatmap blended half and half with the image, the prediction green, the GT red.

Two colour scales. By default a map is min-max normalised per image, as the evaluator normalises it
before thresholding: its lowest value is blue and its highest red, however close they are, so a map
that is almost empty (every value near 0) is drawn as hot as a confident one. With `value_range=(low,
high)` the map is drawn on that fixed scale instead, its own values (SAT's map is a probability,
`value_range=(0, 1)`): an empty map stays blue. When no pixel passes the threshold the evaluator falls
back to a box of its own (SAT's protocol: the whole image; wsolevaluation's: an empty box);
`show_localization(threshold=...)` draws that box dashed and says so in the panel (`nothing_above`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from satlib.evaluation.normalize import normalize_maps, resize_bilinear
from satlib.evaluation.thresholds import map_levels

FALLBACK_NOTE = {"sat": "no pixel > t: whole image", "wsoleval": "no pixel > t: empty box"}


def _image_array(image: Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) tensor in [0, 1] or uint8, or an (H, W, 3) array -> (H, W, 3) float in [0, 1]."""
    array = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if array.ndim != 3:
        raise ValueError(f"image must be (3, H, W) or (H, W, 3), got shape {array.shape}")
    if array.shape[0] == 3 and array.shape[-1] != 3:
        array = array.transpose(1, 2, 0)
    array = array.astype(np.float64) / (255.0 if array.dtype == np.uint8 else 1.0)
    return np.clip(array, 0.0, 1.0)


def heat_values(loc_map: Tensor, size: tuple[int, int], value_range: tuple[float, float] | None = None) -> np.ndarray:
    """A map as the colour scale reads it, (h, w) -> (H, W) in [0, 1]: min-max normalised per map (None, as the
    evaluator normalises it), or its own values on the fixed scale `value_range` (low -> 0, high -> 1, clipped);
    bilinearly resized either way."""
    raw = torch.as_tensor(loc_map).detach()[None].float().cpu()
    if value_range is None:
        return normalize_maps(raw, size, "sat")[0].numpy()
    low, high = (float(v) for v in value_range)
    if not high > low:
        raise ValueError(f"value_range={value_range}: expected (low, high) with high > low")
    return ((resize_bilinear(raw, tuple(size))[0] - low) / (high - low)).clamp(0, 1).numpy()


def nothing_above(maps: Tensor, threshold: float, image_size: int | Sequence[int], protocol: str = "sat") -> Tensor:
    """Where no pixel passes `threshold` as the evaluator thresholds the maps, (N, h, w) -> (N,) bool.

    There the evaluator's box is its fallback, not a region of the map: the whole image (SAT's protocol),
    or an empty box (wsolevaluation's).
    """
    scores, cuts = map_levels(torch.as_tensor(maps).detach().float().cpu(), image_size, [threshold], protocol)
    return ~(scores > cuts[:, :1, None]).flatten(1).any(dim=1)


def overlay(image: Tensor | np.ndarray, loc_map: Tensor, box: Sequence[float] | Tensor | None = None, *,
            label: str | None = None, alpha: float = 0.5, box_color: tuple[int, int, int] = (0, 255, 0),
            value_range: tuple[float, float] | None = None) -> np.ndarray:
    """The image with its map as a jet heatmap and its box drawn in, at the image's own resolution.

    image (3, H, W) or (H, W, 3), uint8 or float in [0, 1]; loc_map (h, w) at any size, resized to (H, W)
    and coloured min-max normalised per map (`value_range=None`, as the evaluator normalises it) or on the
    fixed scale `value_range=(low, high)` (its own values: (0, 1) for SAT's map); box xyxy in the image's
    pixels, end-exclusive (satlib's boxes), outlined in `box_color` about H/150 pixels wide, with `label`
    (e.g. class and score) written at its corner. Returns an (H, W, 3) float RGB array in [0, 1]:
    `plt.imshow(array)` shows it, `plt.imsave(path, array)` writes an H×W image.
    """
    from matplotlib import colormaps  # heavy: imported when a picture is drawn (module docstring)

    rgb = _image_array(image)
    heat = heat_values(loc_map, rgb.shape[:2], value_range)
    blend = (1 - alpha) * rgb + alpha * colormaps["jet"](heat)[..., :3]
    if box is None:
        return blend
    height, width = blend.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in torch.as_tensor(box).reshape(4))
    corners = torch.tensor([[x0, y0, max(x1 - 1, x0), max(y1 - 1, y0)]])  # inclusive corners
    drawn = draw_bounding_boxes(torch.from_numpy(blend).permute(2, 0, 1).float(), corners, colors=box_color,
                                width=max(2, round(min(height, width) / 150)))
    drawn = drawn.permute(1, 2, 0).double().numpy()
    return drawn if label is None else _write_label(drawn, label, (x0, y0), box_color)


def _write_label(rgb: np.ndarray, label: str, corner: tuple[float, float], color: tuple[int, int, int]) -> np.ndarray:
    """`label` in black on a `color` strip at the box's top-left `corner`, in a font sized to the image (about a
    twentieth of its shorter side, smaller if the text would not fit its width), moved inside the image."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = rgb.shape[:2]
    before = np.round(rgb * 255).astype(np.uint8)
    picture = Image.fromarray(before)
    draw = ImageDraw.Draw(picture)
    size = max(6, round(min(height, width) / 20))
    font = ImageFont.load_default(size=size)
    while size > 6 and draw.textlength(label, font=font) + 2 > width:
        size -= 1
        font = ImageFont.load_default(size=size)
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    x = min(max(0.0, corner[0]), max(0.0, width - (right - left) - 2))
    y = min(max(0.0, corner[1]), max(0.0, height - (bottom - top) - 2))
    draw.rectangle((x, y, x + right - left + 2, y + bottom - top + 2), fill=color)
    draw.text((x + 1 - left, y + 1 - top), label, fill=(0, 0, 0), font=font)
    after = np.asarray(picture)
    written = (after != before).any(axis=-1)  # only the label's pixels change; the rest keeps full precision
    out = rgb.copy()
    out[written] = after[written] / 255.0
    return out


def _draw_box(ax, box: Sequence[float], color: str, linestyle: str = "-") -> None:
    from matplotlib.patches import Rectangle  # heavy: as above

    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2,
                           linestyle=linestyle))


def show_localization(image: Tensor | np.ndarray, loc_map: Tensor, pred_box: Sequence[float] | None = None,
                      gt_boxes: Tensor | Sequence[Sequence[float]] | None = None, iou: float | None = None,
                      ax=None, title: str | None = None, *, value_range: tuple[float, float] | None = None,
                      threshold: float | None = None, protocol: str = "sat", fontsize: float = 9):
    """One panel: image with map overlay, predicted box (green), GT boxes (red), IoU in the title.

    `value_range`: the map's colour scale (`overlay`; None: min-max per map). With the `threshold` the box was
    cut at, a box that is the evaluator's fallback (`nothing_above`: no pixel passes) is drawn dashed and
    named in the panel.
    """
    import matplotlib.pyplot as plt  # heavy: as above

    ax = ax if ax is not None else plt.subplots(figsize=(3, 3))[1]
    picture = overlay(image, loc_map, value_range=value_range)
    ax.imshow(picture)
    for box in ([] if gt_boxes is None else torch.as_tensor(gt_boxes).reshape(-1, 4).tolist()):
        _draw_box(ax, box, "red")
    fallback = threshold is not None and bool(nothing_above(torch.as_tensor(loc_map)[None], threshold,
                                                            picture.shape[:2], protocol)[0])
    if pred_box is not None:
        _draw_box(ax, torch.as_tensor(pred_box).tolist(), "lime", "--" if fallback else "-")
    if fallback:
        ax.text(0.03, 0.04, FALLBACK_NOTE[protocol], transform=ax.transAxes, fontsize=fontsize * 0.75,
                color="black", bbox={"facecolor": "white", "alpha": 0.8, "pad": 1, "linewidth": 0})
    parts = [title] if title else []
    if iou is not None:
        parts.append(f"IoU {float(iou):.2f}")
    ax.set_title("  ".join(parts), fontsize=fontsize)
    ax.set_axis_off()
    return ax


def show_localization_grid(images: Tensor | Sequence, loc_maps: Tensor | Sequence, pred_boxes=None, gt_boxes=None,
                           ious=None, titles: Sequence[str] | None = None, cols: int = 4, panel_size: float = 2.5,
                           *, value_range: tuple[float, float] | None = None, threshold: float | None = None,
                           protocol: str = "sat"):
    """A grid of `show_localization` panels, one per image (`value_range`, `threshold` and `protocol` as
    there, for every panel); returns the figure."""
    import matplotlib.pyplot as plt  # heavy: as above

    count = len(images)
    if len(loc_maps) != count:
        raise ValueError(f"{count} images but {len(loc_maps)} maps")
    rows = max(1, -(-count // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_size, rows * panel_size), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= count:
            ax.set_axis_off()
            continue
        show_localization(images[i], loc_maps[i], None if pred_boxes is None else pred_boxes[i],
                          None if gt_boxes is None else gt_boxes[i], None if ious is None else ious[i],
                          ax=ax, title=None if titles is None else titles[i], value_range=value_range,
                          threshold=threshold, protocol=protocol)
    fig.tight_layout()
    return fig
