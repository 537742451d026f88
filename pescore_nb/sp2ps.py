"""Sp2PS: a spatial and spectral comparison of two CAMs, joined by the harmonic mean.

A reconstruction of D. Renza, D. Ballesteros, "Sp2PS: Pruning Score by Spectral and Spatial
Evaluation of CAM Images", Informatics 10(3):72, 2023, doi:10.3390/informatics10030072.

What is known (the paper's abstract; its full text was not available to us): the CAMs of the
unpruned and the pruned model are compared *spatially* and *spectrally*, the two comparisons are
integrated by the *harmonic mean*, over all samples of the test set.

What is our choice (each one a named field of :class:`Sp2PSConfig`, recorded in the results):

- spatial similarity: mean SSIM of the two maps, exactly :func:`pescore_nb.metrics.ssim`
  (Gaussian window, Wang et al. 2004 constants; the same defaults as :class:`PEConfig`).
- spectrum: the magnitude of the 2-D DFT of each map, centred (``fftshift``), either
  ``"magnitude"``: ``|F| / (H * W)`` or ``"log"``: ``log1p(|F|) / log1p(H * W)``. Maps lie in
  [0, 1], so ``|F| <= H * W`` and both spectra lie in [0, 1] on a fixed, pair-independent scale.
- spectral similarity: ``"ssim"``: SSIM of the two spectra seen as images (same window and
  constants as the spatial term), or ``"cosine"``: the cosine of the two spectra, in [0, 1]
  because magnitudes are non-negative. The magnitude spectrum ignores *where* the attention is
  (a shift leaves it unchanged) and measures its *shape* (blob size, fragmentation), which SSIM
  alone under-weights.
- defaults ``"magnitude"`` + ``"ssim"``: on 64 x 64 Gaussian blobs it was the one combination that
  fell monotonically both as the blob widened (1 -> 0.50 at 4x the width) and as noise was mixed
  in (0.89 at 10 %, 0.26 at 100 %). ``"log"`` + ``"cosine"`` drops to 0.52 at 10 % noise;
  ``"magnitude"`` + ``"cosine"`` is swamped by the DC term (0.85 against pure noise).
- join: per image, Sp2PS_i = 2 S_i P_i / (S_i + P_i) (0 when both are 0); the dataset score is
  then the class-weighted mean of Sp2PS_i, like the PE-score (``scores.score(ds, "sp2ps")``).

Sp2PS of a map with itself is exactly 1. Two all-zero (degenerate) maps have spectral similarity
1, as the IoU of two empty masks is 1; under ``"cosine"`` one all-zero map against a non-zero one
has spectral similarity 0.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from .metrics import SSIMParameters, ssim

SPECTRA = ("magnitude", "log")
SPECTRAL_SIMILARITIES = ("ssim", "cosine")
CONFIG_ATTRIBUTE = "sp2ps_config"


@dataclasses.dataclass(frozen=True)
class Sp2PSConfig(SSIMParameters):
    """Every parameter of our Sp2PS reconstruction (see the module docstring).

    ssim_window, ssim_sigma, ssim_k1, ssim_k2: the spatial SSIM (see :class:`SSIMParameters`).
    spectrum: ``"magnitude"`` (normalised DFT magnitude) or ``"log"`` (normalised ``log1p`` of it).
    spectral_similarity: ``"ssim"`` or ``"cosine"`` between the two centred spectra.
    """

    spectrum: Literal["magnitude", "log"] = "magnitude"
    spectral_similarity: Literal["ssim", "cosine"] = "ssim"
    attribute = CONFIG_ATTRIBUTE

    def __post_init__(self):
        super().__post_init__()
        for field, value, choices in (("spectrum", self.spectrum, SPECTRA),
                                      ("spectral_similarity", self.spectral_similarity, SPECTRAL_SIMILARITIES)):
            if value not in choices:
                raise ValueError(f"Sp2PSConfig.{field} must be one of {choices}, got {value!r}.")


def spectrum(maps: torch.Tensor, kind: str = "magnitude") -> torch.Tensor:
    """Centred, normalised DFT magnitude of maps ``(..., H, W)`` in [0, 1] -> ``(..., H, W)`` float64 in [0, 1]."""
    height, width = maps.shape[-2:]
    magnitude = torch.fft.fftshift(torch.fft.fft2(maps.to(torch.float64)).abs(), dim=(-2, -1))
    if kind == "log":
        return torch.log1p(magnitude) / torch.log1p(torch.tensor(float(height * width), dtype=torch.float64))
    return magnitude / (height * width)


def spectral_similarity(maps_a: torch.Tensor, maps_b: torch.Tensor,
                        config: Sp2PSConfig = Sp2PSConfig()) -> torch.Tensor:
    """Similarity in [0, 1] of the spectra of each pair of maps ``(..., H, W)`` -> ``(...)``."""
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"spectral_similarity needs maps of one shape, got {tuple(maps_a.shape)} "
                         f"and {tuple(maps_b.shape)}.")
    spec_a, spec_b = spectrum(maps_a, config.spectrum), spectrum(maps_b, config.spectrum)
    if config.spectral_similarity == "ssim":
        similarity = ssim(spec_a, spec_b, config)
    else:
        dot = (spec_a * spec_b).sum(dim=(-2, -1))
        norm_a, norm_b = (spec_a * spec_a).sum(dim=(-2, -1)), (spec_b * spec_b).sum(dim=(-2, -1))
        cosine = dot / torch.sqrt(norm_a * norm_b).clamp(min=torch.finfo(torch.float64).tiny)
        similarity = torch.where((norm_a == 0) & (norm_b == 0), torch.ones_like(cosine), cosine)
    return similarity.clamp(0.0, 1.0).to(maps_a.dtype)


def harmonic_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``2ab / (a + b)`` of non-negative tensors (broadcast together); 0 where both are 0."""
    total = a + b
    return torch.where(total > 0, 2 * a * b / total.clamp(min=torch.finfo(total.dtype).tiny),
                       torch.zeros_like(total))


def sp2ps(ref_maps: torch.Tensor, cand_maps: torch.Tensor, config: Sp2PSConfig = Sp2PSConfig(),
          spatial: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image Sp2PS of reference and candidate maps ``(..., H, W)`` in [0, 1] -> ``(...)`` in [0, 1].

    The harmonic mean of the spatial SSIM and the spectral similarity; runs on the maps' device.
    ``spatial (...)``: the SSIM of the pairs when already computed with ``config``.
    """
    if spatial is None:
        spatial = ssim(ref_maps, cand_maps, config)
    return harmonic_mean(spatial, spectral_similarity(ref_maps, cand_maps, config))
