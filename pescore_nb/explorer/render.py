"""Heatmap panels as RGB arrays and PNG/JPEG bytes: pure numpy, one colour lookup per pixel.

Maps are ``(H, W)`` float in [0, 1], pictures ``(H, W, 3)`` uint8; every function returns
``(H, W, 3)`` uint8 except :func:`encode`, :func:`colorbar` and :func:`colorbar_figure`. The colour maps and the grey
picture under an overlay are :mod:`pescore_nb.plot`'s, so the explorer and the figures agree.
"""
from __future__ import annotations

import functools
import io

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..plot import CAM_COLORMAP, DIFFERENCE_COLORMAP, OVERLAY_ALPHA, difference_limit, grey_picture

HEATMAP_COLORMAP = CAM_COLORMAP
MASK_COLORS = {"reference only": (230, 60, 60), "candidate only": (60, 120, 240), "both": (255, 255, 255)}
COLORBAR_WIDTH, COLORBAR_DPI, COLORBAR_FONT = 58, 100, 9  # px, dots per inch, points: 12.5 px text


def _lookup_table(name: str) -> np.ndarray:
    """The colormap ``name`` as 256 RGB colours ``(256, 3)`` uint8."""
    return (matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


HEATMAP_LUT, DIFFERENCE_LUT = _lookup_table(CAM_COLORMAP), _lookup_table(DIFFERENCE_COLORMAP)


def colorize(values: np.ndarray, lut: np.ndarray = HEATMAP_LUT) -> np.ndarray:
    """Values ``(H, W)`` in [0, 1] through a colour table ``(256, 3)``."""
    return lut[(np.clip(values, 0.0, 1.0) * 255).round().astype(np.uint8)]


def overlay(picture: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The heatmap in colour blended over a grey copy of the picture, ``alpha`` its weight."""
    blended = (1.0 - alpha) * grey_picture(picture) + alpha * colorize(heatmap)
    return blended.round().astype(np.uint8)


def difference(reference: np.ndarray, candidate: np.ndarray, limit: float | None = None) -> np.ndarray:
    """``candidate - reference`` over ``[-limit, limit]`` (default :func:`plot.difference_limit`),
    blue where the candidate looks less, red where more, white where they agree."""
    delta = candidate - reference
    limit = difference_limit(delta) if limit is None else limit
    return colorize((delta / limit + 1.0) / 2.0, DIFFERENCE_LUT)


def masks(reference: np.ndarray, candidate: np.ndarray, threshold: float) -> np.ndarray:
    """The binarised maps ``map >= threshold`` of the IoU, coloured by ``MASK_COLORS`` (black: neither)."""
    in_reference, in_candidate = reference >= threshold, candidate >= threshold
    rgb = np.zeros(reference.shape + (3,), dtype=np.uint8)
    rgb[in_reference & ~in_candidate] = MASK_COLORS["reference only"]
    rgb[in_candidate & ~in_reference] = MASK_COLORS["candidate only"]
    rgb[in_reference & in_candidate] = MASK_COLORS["both"]
    return rgb


def encode(rgb: np.ndarray, image_format: str = "png") -> bytes:
    """An image ``(H, W, 3 or 4)`` uint8 as ``"png"`` (flat colours, line art) or ``"jpeg"`` (photos and
    heatmaps: ten times faster to encode than PNG at 224x224) bytes, with fast settings."""
    buffer = io.BytesIO()
    options = {"quality": 90, "subsampling": 0} if image_format == "jpeg" else {"compress_level": 1}
    Image.fromarray(np.ascontiguousarray(rgb[..., :3])).save(buffer, format=image_format, **options)
    return buffer.getvalue()


@functools.lru_cache(maxsize=16)
def colorbar(colormap: str, low: float, high: float, label: str, height: int, width: int = COLORBAR_WIDTH) -> bytes:
    """:func:`colorbar_figure` as PNG bytes. Cached: the explorer asks for a handful."""
    buffer = io.BytesIO()
    colorbar_figure(colormap, low, high, label, height, width).savefig(buffer, format="png", dpi=COLORBAR_DPI)
    return buffer.getvalue()


def colorbar_figure(colormap: str, low: float, high: float, label: str, height: int,
                    width: int = COLORBAR_WIDTH) -> Figure:
    """A vertical colour bar ``width x height`` px: ``colormap`` from ``low`` to ``high``, ``label``
    above it, three ticks right of it (``low``, the middle, ``high``; signed when ``low < 0``), all text
    at :data:`COLORBAR_FONT` points (12.5 px), laid out in pixels so that no text leaves the figure or
    touches another at any range."""
    figure = Figure(figsize=(width / COLORBAR_DPI, height / COLORBAR_DPI), dpi=COLORBAR_DPI)
    FigureCanvasAgg(figure)
    text_px = COLORBAR_FONT * COLORBAR_DPI / 72
    title_px, margin_px, bar_px = text_px + 4, text_px / 2 + 2, 12  # tick labels reach half their height past the bar
    top = height - title_px - margin_px
    axes = figure.add_axes((4 / width, margin_px / height, bar_px / width, (top - margin_px) / height))
    axes.imshow(np.linspace(low, high, 256)[:, None], aspect="auto", cmap=colormap, vmin=low, vmax=high,
                origin="lower", extent=(0, 1, low, high))
    axes.set_xticks([])
    axes.yaxis.tick_right()
    ticks = [low, (low + high) / 2, high]
    axes.set_yticks(ticks, [_tick_text(tick, signed=low < 0) for tick in ticks], fontsize=COLORBAR_FONT)
    axes.tick_params(axis="y", length=3, pad=2)
    figure.text(0.5, 1 - 2 / height, label, ha="center", va="top", fontsize=COLORBAR_FONT)
    return figure


def _tick_text(tick: float, signed: bool) -> str:
    """``0.5`` -> ``"0.5"``, or signed ``"+0.5"`` / ``"−0.5"`` (a true minus sign); zero is ``"0"``."""
    if abs(tick) < 1e-12:
        return "0"
    text = f"{abs(tick):.2g}"
    return (("+" if tick > 0 else "−") + text) if signed else text
