"""The PE-score metric: `PEConfig` and batched, device-agnostic torch functions.

Every function works on any leading batch shape: maps are ``(..., H, W)`` float tensors in
[0, 1], probabilities ``(...)``. Nothing here knows about models or xarray.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
from typing import Literal

import torch

TARGETS = ("label", "reference")
COMBINES = ("product", "mean")
CLASS_WEIGHTS = ("support", "macro")
CONFIG_ATTRIBUTE = "pe_config"


class JsonConfig:
    """JSON round-trip for the frozen config dataclasses stored in a Dataset's attrs."""

    attribute: str  # the attrs key under which `evaluate` stores the config

    def to_json(self) -> str:
        """The config as a JSON string (stored in a Dataset's attrs under ``attribute``)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        """Rebuild a config from :meth:`to_json`'s output."""
        return cls(**json.loads(text))

    @classmethod
    def from_attrs(cls, attrs: dict):
        """The config recorded in a Dataset's attrs by ``evaluate``."""
        if cls.attribute not in attrs:
            raise KeyError(f"The Dataset has no '{cls.attribute}' attribute: it was not made by "
                           "pescore_nb.evaluate, or its attrs were dropped (keep_attrs=True keeps them).")
        return cls.from_json(attrs[cls.attribute])


@dataclasses.dataclass(frozen=True)
class SSIMParameters(JsonConfig):
    """The Gaussian-window SSIM of Wang et al. 2004 (data range 1), shared by PE and Sp2PS configs.

    As ``skimage.metrics.structural_similarity(gaussian_weights=True, use_sample_covariance=False,
    data_range=1)``, whose window is ``2 * int(3.5 * sigma + 0.5) + 1`` wide (11 for sigma 1.5):
    change ``ssim_window`` and ``ssim_sigma`` together to stay comparable with scikit-image.
    """

    ssim_window: int = 11
    ssim_sigma: float = 1.5
    ssim_k1: float = 0.01
    ssim_k2: float = 0.03

    def __post_init__(self):
        name = type(self).__name__
        window = self.ssim_window
        if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
            raise ValueError(f"{name}.ssim_window must be an odd integer >= 3, got {window!r}.")
        for field in ("ssim_sigma", "ssim_k1", "ssim_k2"):
            _check_positive(name, field, getattr(self, field))

    def ssim_parameters(self) -> "SSIMParameters":
        """Only the SSIM fields, to compare two configs' SSIM or to call :func:`ssim`."""
        return SSIMParameters(**{field.name: getattr(self, field.name)
                                 for field in dataclasses.fields(SSIMParameters)})


@dataclasses.dataclass(frozen=True)
class PEConfig(SSIMParameters):
    """Every parameter of the PE-score, with the defaults of ``PESCORE.md``.

    target: whose class the CAMs explain: ``"label"`` (the true label) or ``"reference"``
        (the reference model's prediction).
    ssim_window, ssim_sigma, ssim_k1, ssim_k2: the SSIM (see :class:`SSIMParameters`).
    iou_threshold: maps are binarised as ``heatmap >= iou_threshold`` for the IoU.
    combine: ``"product"`` (SSIM * IoU * Conf) or ``"mean"`` (their arithmetic mean).
    class_weights: ``"support"`` (w_k = N_k / N) or ``"macro"`` (w_k = 1 / K).
    """

    target: Literal["label", "reference"] = "label"
    iou_threshold: float = 0.5
    combine: Literal["product", "mean"] = "product"
    class_weights: Literal["support", "macro"] = "support"
    attribute = CONFIG_ATTRIBUTE

    def __post_init__(self):
        super().__post_init__()
        _check_choice("target", self.target, TARGETS)
        _check_choice("combine", self.combine, COMBINES)
        _check_choice("class_weights", self.class_weights, CLASS_WEIGHTS)
        threshold = self.iou_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 < threshold <= 1.0:
            raise ValueError(f"PEConfig.iou_threshold must be in (0, 1], got {self.iou_threshold}.")


def _check_positive(config: str, field: str, value) -> None:
    """``value`` must be a real number > 0 (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{config}.{field} must be a number > 0, got {value!r}.")


def _check_choice(field: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"PEConfig.{field} must be one of {choices}, got {value!r}.")


def gaussian_window(size: int, sigma: float, device=None) -> torch.Tensor:
    """The normalised 1-D Gaussian window ``(size,)`` float64 that scipy's gaussian_filter uses."""
    offsets = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    window = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return window / window.sum()


def _valid_blur_matrix(length: int, window: torch.Tensor) -> torch.Tensor:
    """``(length - size + 1, length)`` band matrix: ``matrix @ signal`` is the window's valid convolution."""
    size = len(window)
    rows = torch.arange(length - size + 1, device=window.device)[:, None]
    matrix = torch.zeros(length - size + 1, length, dtype=window.dtype, device=window.device)
    matrix[rows, rows + torch.arange(size, device=window.device)] = window
    return matrix


def ssim(maps_a: torch.Tensor, maps_b: torch.Tensor, config: SSIMParameters = SSIMParameters()) -> torch.Tensor:
    """Mean SSIM of each pair of maps ``(..., H, W)`` -> ``(...)``, clipped to [0, 1].

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``: the mean is taken over the pixels at least
    ``window // 2`` away from the border, so padding never enters. The separable Gaussian blur
    runs as two band-matrix products in float32 on the maps' device (faster on the CPU than a 1-channel
    convolution; within 1e-6 of scikit-image's float64 result on [0, 1] maps).
    """
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"ssim needs maps of one shape, got {tuple(maps_a.shape)} and {tuple(maps_b.shape)}.")
    height, width = maps_a.shape[-2:]
    if min(height, width) < config.ssim_window:
        raise ValueError(f"Maps of {height}x{width} are smaller than the SSIM window "
                         f"({config.ssim_window}); use larger images or a smaller PEConfig.ssim_window.")
    a = maps_a.to(torch.float32)
    b = maps_b.to(torch.float32)
    window = gaussian_window(config.ssim_window, config.ssim_sigma, device=a.device).to(torch.float32)
    blur_rows, blur_cols = _valid_blur_matrix(height, window), _valid_blur_matrix(width, window)
    mean_a, mean_b, mean_aa, mean_bb, mean_ab = (blur_rows @ moment @ blur_cols.T
                                                 for moment in (a, b, a * a, b * b, a * b))
    var_a = mean_aa - mean_a ** 2
    var_b = mean_bb - mean_b ** 2
    cov_ab = mean_ab - mean_a * mean_b
    c1, c2 = config.ssim_k1 ** 2, config.ssim_k2 ** 2
    ssim_map = ((2 * mean_a * mean_b + c1) * (2 * cov_ab + c2)) / (
        (mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2))
    return ssim_map.mean(dim=(-2, -1)).clamp(0.0, 1.0).to(maps_a.dtype)


def iou(maps_a: torch.Tensor, maps_b: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IoU of the binarised maps ``map >= threshold``: ``(..., H, W)`` -> ``(...)``; 1 when both are empty."""
    mask_a, mask_b = maps_a >= threshold, maps_b >= threshold
    intersection = (mask_a & mask_b).sum(dim=(-2, -1))
    union = (mask_a | mask_b).sum(dim=(-2, -1))
    ratio = intersection.to(torch.float32) / union.clamp(min=1).to(torch.float32)
    return torch.where(union == 0, torch.ones_like(ratio), ratio)


def confidence(ref_prob: torch.Tensor, cand_prob: torch.Tensor) -> torch.Tensor:
    """The confidence term ``1 - |p_R - p_C|`` of softmax probabilities of the target class ``(...)``."""
    return 1.0 - (ref_prob - cand_prob).abs()


def combine(ssim_values: torch.Tensor, iou_values: torch.Tensor, conf_values: torch.Tensor,
            how: str = "product") -> torch.Tensor:
    """Per-image PE from its three terms (broadcast together): their product or their mean."""
    _check_choice("combine", how, COMBINES)
    if how == "product":
        return ssim_values * iou_values * conf_values
    return (ssim_values + iou_values + conf_values) / 3.0

