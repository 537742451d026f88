"""Heatmap panels as RGB arrays and PNG bytes: pure numpy, one colour lookup per pixel.

Maps are ``(H, W)`` float in [0, 1], pictures ``(H, W, 3)`` uint8; every function returns
``(H, W, 3)`` uint8 except :func:`encode`.
"""
from __future__ import annotations

import io

import matplotlib
import numpy as np
from PIL import Image

HEATMAP_COLORMAP, DIFFERENCE_COLORMAP = "jet", "RdBu_r"
MASK_COLORS = {"reference only": (230, 60, 60), "candidate only": (60, 120, 240), "both": (255, 255, 255)}


def _lookup_table(name: str) -> np.ndarray:
    """The colormap ``name`` as 256 RGB colours ``(256, 3)`` uint8."""
    return (matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


HEATMAP_LUT, DIFFERENCE_LUT = _lookup_table(HEATMAP_COLORMAP), _lookup_table(DIFFERENCE_COLORMAP)


def colorize(values: np.ndarray, lut: np.ndarray = HEATMAP_LUT) -> np.ndarray:
    """Values ``(H, W)`` in [0, 1] through a colour table ``(256, 3)``."""
    return lut[(np.clip(values, 0.0, 1.0) * 255).round().astype(np.uint8)]


def overlay(picture: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heatmap in colour blended over the picture, ``alpha`` its weight."""
    blended = (1.0 - alpha) * picture + alpha * colorize(heatmap)
    return blended.round().astype(np.uint8)


def difference(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """``candidate - reference`` in [-1, 1], blue where the candidate looks less, red where more."""
    return colorize((candidate - reference + 1.0) / 2.0, DIFFERENCE_LUT)


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
