"""The PE-score metric: `PEConfig` and batched, device-agnostic torch functions.

Every function works on any leading batch shape: maps are ``(..., H, W)`` float tensors in
[0, 1], probabilities ``(...)``. Nothing here knows about models or xarray.

To compare one reference with many candidates, ``SSIMReference(ref_maps, config)`` and
``IoUReference(ref_maps, threshold)`` keep what depends on the reference alone (blurred moments,
masks); their ``compare(cand_maps)`` equals ``ssim(ref_maps, cand_maps, config)`` and
``iou(ref_maps, cand_maps, threshold)``, which make one per call.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any, ClassVar, Literal

import torch

TARGETS = ("label", "reference")
COMBINES = ("product", "mean")
CLASS_WEIGHTS = ("support", "macro")
CONFIG_ATTRIBUTE = "pe_config"


class JsonConfig:
    """JSON round-trip for the frozen config dataclasses stored in a Dataset's attrs."""

    attribute: str  # the attrs key under which `evaluate` stores the config
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # every subclass is a dataclass

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
    """Every parameter of the PE-score, with its default.

    - target: whose class the CAMs explain: ``"label"`` (the true label) or ``"reference"``
      (the reference model's prediction).
    - ssim_window: the width in pixels of the SSIM's Gaussian window (odd, >= 3; see :class:`SSIMParameters`).
    - ssim_sigma: the standard deviation in pixels of that window.
    - ssim_k1, ssim_k2: the SSIM's stabilising constants, ``C1 = (K1 * L)**2`` and ``C2 = (K2 * L)**2``
      with the data range ``L = 1``.
    - iou_threshold: maps are binarised as ``heatmap >= iou_threshold`` for the IoU.
    - combine: ``"product"`` (SSIM * IoU * Conf) or ``"mean"`` (their arithmetic mean).
    - class_weights: ``"support"`` (``w_k = N_k / N``) or ``"macro"`` (``w_k = 1 / K``).
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
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ValueError(f"{config}.{field} must be a number > 0, got {value!r}.")


def _check_choice(field: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"PEConfig.{field} must be one of {choices}, got {value!r}.")


def gaussian_window(size: int, sigma: float, device=None) -> torch.Tensor:
    """The normalised 1-D Gaussian window ``(size,)`` float64 that scipy's gaussian_filter uses."""
    offsets = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    window = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return window / window.sum()


_BLUR_BLOCK = 32  # output pixels per band-matrix product: 24-48 were alike on the CPU, 2x faster than one dense product


class _ValidBlur:
    """The separable Gaussian blur of maps ``(..., H, W)`` -> ``(..., H - size + 1, W - size + 1)``, no padding.

    A valid convolution is a product with a band (Toeplitz) matrix; every block of ``_BLUR_BLOCK``
    output pixels needs only ``_BLUR_BLOCK + size - 1`` input pixels, so the blur runs as small
    matrix products on strided views (no copies): float32 on the maps' device.
    """

    def __init__(self, config: SSIMParameters, device):
        self.size = config.ssim_window
        window = gaussian_window(self.size, config.ssim_sigma, device=device).to(torch.float32)
        inputs = torch.arange(_BLUR_BLOCK + self.size - 1, device=device)
        offset = inputs[:, None] - torch.arange(_BLUR_BLOCK, device=device)[None, :]
        # block[i, j] = window[i - j]: output j of a block is sum_i input[i] * block[i, j]
        self.block = torch.where((offset >= 0) & (offset < self.size), window[offset.clamp(0, self.size - 1)],
                                 torch.zeros((), device=device))

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        height, width = maps.shape[-2:]
        out_height, out_width = height - self.size + 1, width - self.size + 1
        count = maps.numel() // (height * width)
        rows = maps.reshape(count * height, width)
        across = rows.new_empty(len(rows), out_width)
        for start in range(0, out_width, _BLUR_BLOCK):
            stop = min(start + _BLUR_BLOCK, out_width)
            torch.mm(rows[:, start:stop + self.size - 1], self.block[:stop - start + self.size - 1, :stop - start],
                     out=across[:, start:stop])
        across = across.reshape(count, height, out_width)
        blurred = across.new_empty(count, out_height, out_width)
        for start in range(0, out_height, _BLUR_BLOCK):
            stop = min(start + _BLUR_BLOCK, out_height)
            torch.matmul(self.block[:stop - start + self.size - 1, :stop - start].T,
                         across[:, start:stop + self.size - 1], out=blurred[:, start:stop])
        return blurred.reshape(*maps.shape[:-2], out_height, out_width)


_CHUNK_PIXELS = 1 << 19  # on the CPU, SSIM runs on <= 10 maps of 224 x 224 at a time: its 2 MB planes stay in
                         # the core's cache, 1.6x faster than 32 maps at once; other devices take the batch at once


def _parts(count: int, pixels: int, device: torch.device) -> list[slice]:
    """``count`` maps of ``pixels`` each as consecutive slices of near-equal size, processed one after the other."""
    if count == 0:
        return [slice(0, 0)]
    parts = math.ceil(count * pixels / _CHUNK_PIXELS) if device.type == "cpu" else 1
    step = max(1, math.ceil(count / max(1, min(parts, count))))
    return [slice(start, min(start + step, count)) for start in range(0, count, step)]


class SSIMReference:
    """Reference maps and their blurred moments, computed once and compared with many candidates' maps.

    ``SSIMReference(ref_maps, config).compare(cand_maps)`` equals ``ssim(ref_maps, cand_maps, config)``
    (:func:`ssim` is this); keeping the object saves the reference's two Gaussian blurs (of the
    maps and of their squares) for every further candidate, leaving three per candidate.

    maps: the reference maps ``(..., H, W)`` as float32.
    mean: their blurred mean ``mu_a``; mean_squared: ``mu_a * mu_a``; variance: the blurred
    ``a * a`` minus ``mean_squared``; all ``(..., H - window + 1, W - window + 1)`` float32.
    """

    def __init__(self, maps: torch.Tensor, config: SSIMParameters = SSIMParameters()):
        height, width = maps.shape[-2:]
        if min(height, width) < config.ssim_window:
            raise ValueError(f"Maps of {height}x{width} are smaller than the SSIM window "
                             f"({config.ssim_window}); use larger images or a smaller PEConfig.ssim_window.")
        self.config = config
        self.maps = maps.to(torch.float32)
        self._blur = _ValidBlur(config, self.maps.device)
        self._flat_maps = self.maps.reshape(self.maps.numel() // (height * width), height, width)
        # the candidates' moments are blurred in these same parts: equal shapes give bit-equal blurs
        self._parts = _parts(len(self._flat_maps), height * width, self.maps.device)
        parts = [self._flat_maps[part] for part in self._parts]
        blurred = [(self._blur(part), self._blur(part * part)) for part in parts]
        shape = (*maps.shape[:-2], height - config.ssim_window + 1, width - config.ssim_window + 1)
        self.mean = torch.cat([mean for mean, _ in blurred]).reshape(shape)
        self.mean_squared = self.mean * self.mean
        self.variance = torch.cat([squares for _, squares in blurred]).reshape(shape).sub_(self.mean_squared)
        self._flat_moments = [moment.reshape(len(self._flat_maps), *shape[-2:])
                              for moment in (self.mean, self.mean_squared, self.variance)]

    def compare(self, maps: torch.Tensor) -> torch.Tensor:
        """Mean SSIM of each reference map with its counterpart in ``maps (..., H, W)`` -> ``(...)`` float32."""
        if maps.shape != self.maps.shape:
            raise ValueError(f"ssim needs maps of one shape, got {tuple(self.maps.shape)} and {tuple(maps.shape)}.")
        flat = maps.to(torch.float32).reshape(self._flat_maps.shape)
        values = flat.new_empty(len(flat))
        for part in self._parts:
            values[part] = self._compare(part, flat[part])
        return values.reshape(maps.shape[:-2])

    def _compare(self, part: slice, maps: torch.Tensor) -> torch.Tensor:
        """Mean SSIM of the reference maps ``part`` and ``maps (n, H, W)`` -> ``(n,)``."""
        ref_maps = self._flat_maps[part]
        ref_mean, ref_mean_squared, ref_variance = (moment[part] for moment in self._flat_moments)
        c1, c2 = self.config.ssim_k1 ** 2, self.config.ssim_k2 ** 2
        mean = self._blur(maps)
        mean_cross = ref_mean * mean                                   # mu_a mu_b
        mean_squared = mean.mul_(mean)                                 # mu_b^2 (mu_b is not needed again)
        covariance = self._blur(ref_maps * maps).sub_(mean_cross)      # E[ab] - mu_a mu_b
        variance = self._blur(maps * maps).sub_(mean_squared)          # E[bb] - mu_b^2
        # (2 mu_a mu_b + c1)(2 cov + c2) / ((mu_a^2 + mu_b^2 + c1)(var_a + var_b + c2)), each term once, in place.
        # Written so that identical maps give exactly 1: x + x == 2 * x in floating point.
        numerator = mean_cross.mul_(2).add_(c1).mul_(covariance.mul_(2).add_(c2))
        denominator = mean_squared.add_(ref_mean_squared).add_(c1).mul_(variance.add_(ref_variance).add_(c2))
        return numerator.div_(denominator).mean(dim=(-2, -1)).clamp_(0.0, 1.0)


def ssim(maps_a: torch.Tensor, maps_b: torch.Tensor, config: SSIMParameters = SSIMParameters()) -> torch.Tensor:
    """Mean SSIM of each pair of maps ``(..., H, W)`` -> ``(...)``, clipped to [0, 1].

    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)``: the mean is taken over the pixels at least
    ``window // 2`` away from the border, so padding never enters. The separable Gaussian blur
    runs as banded matrix products in float32 on the maps' device (within 1e-6 of scikit-image's
    float64 result on [0, 1] maps). A map with itself scores exactly 1. To compare one reference
    with many candidates, keep an :class:`SSIMReference` (this function makes one per call).
    """
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"ssim needs maps of one shape, got {tuple(maps_a.shape)} and {tuple(maps_b.shape)}.")
    return SSIMReference(maps_a, config).compare(maps_b).to(maps_a.dtype)


class IoUReference:
    """The reference maps' masks ``maps >= threshold`` ``(..., H, W)`` and their sizes ``(...)``, made once.

    ``IoUReference(ref_maps, threshold).compare(cand_maps)`` equals ``iou(ref_maps, cand_maps, threshold)``.
    """

    def __init__(self, maps: torch.Tensor, threshold: float = 0.5):
        self.threshold = threshold
        self.masks = maps >= threshold
        self.sizes = self.masks.sum(dim=(-2, -1))

    def compare(self, maps: torch.Tensor) -> torch.Tensor:
        """IoU of each reference mask with the mask of its counterpart in ``maps (..., H, W)`` -> ``(...)`` float32."""
        if maps.shape != self.masks.shape:
            raise ValueError(f"iou needs maps of one shape, got {tuple(self.masks.shape)} and {tuple(maps.shape)}.")
        masks = maps >= self.threshold
        intersection = (masks & self.masks).sum(dim=(-2, -1))
        union = self.sizes + masks.sum(dim=(-2, -1)) - intersection
        ratio = intersection.to(torch.float32) / union.clamp(min=1).to(torch.float32)
        return torch.where(union == 0, torch.ones_like(ratio), ratio)


def iou(maps_a: torch.Tensor, maps_b: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IoU of the binarised maps ``map >= threshold``: ``(..., H, W)`` -> ``(...)``; 1 when both are empty."""
    return IoUReference(maps_a, threshold).compare(maps_b)


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

