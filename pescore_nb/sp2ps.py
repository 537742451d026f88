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

``evaluate`` computes it only when asked (``sp2ps_config=Sp2PSConfig()``), through one
:class:`Sp2PSReference` per batch: the reference's spectra are computed once for all candidates.

Sp2PS of a map with itself is exactly 1. Two all-zero (degenerate) maps have spectral similarity
1, as the IoU of two empty masks is 1; under ``"cosine"`` one all-zero map against a non-zero one
has spectral similarity 0.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

from .metrics import SSIMParameters, SSIMReference

SPECTRA = ("magnitude", "log")
SPECTRAL_SIMILARITIES = ("ssim", "cosine")
CONFIG_ATTRIBUTE = "sp2ps_config"


@dataclasses.dataclass(frozen=True)
class Sp2PSConfig(SSIMParameters):
    """Every parameter of our Sp2PS reconstruction (see the module docstring).

    - ssim_window, ssim_sigma, ssim_k1, ssim_k2: the spatial SSIM (see :class:`SSIMParameters`).
    - spectrum: ``"magnitude"`` (normalised DFT magnitude) or ``"log"`` (normalised ``log1p`` of it).
    - spectral_similarity: ``"ssim"`` or ``"cosine"`` between the two centred spectra.
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
    """Centred, normalised DFT magnitude of maps ``(..., H, W)`` in [0, 1] -> ``(..., H, W)`` float32 in [0, 1].

    A float32 ``rfft2`` (half the work of a complex ``fft2``): a real map's spectrum mirrors
    itself, ``|F[k, l]| = |F[-k, -l]|``, so the half it gives is unfolded into the full, centred
    spectrum (as ``fftshift``). Within 1e-7 of a float64 ``fft2`` for ``"magnitude"``, 1e-4 for
    ``"log"`` (the logarithm magnifies the rounding of the smallest coefficients).
    """
    height, width = maps.shape[-2:]
    half = torch.fft.rfft2(maps.to(torch.float32), norm="forward" if kind == "magnitude" else "backward").abs()
    full = _centred_full(half, width)
    if kind == "log":
        return full.log1p_().div_(math.log1p(height * width))
    return full


def _centred_full(half: torch.Tensor, width: int) -> torch.Tensor:
    """The centred full spectrum ``(..., H, W)`` from the ``rfft2`` magnitudes ``half (..., H, W // 2 + 1)``.

    Centred pixel ``(u, v)`` holds ``F[(u - H // 2) mod H, (v - W // 2) mod W]``. Its right part
    (``v >= W // 2``) is ``half`` with rows rolled; its left part reads the mirror
    ``F[-k, -l] = half[-k mod H, W - l]``: columns ``W // 2 ... 1`` of ``half``, rows reversed.
    """
    height = half.shape[-2]
    right = half.roll(height // 2, dims=-2)[..., :width - width // 2]
    mirrored_rows = torch.cat([half[..., :1, :], half[..., 1:, :].flip(-2)], dim=-2).roll(height // 2, dims=-2)
    left = mirrored_rows[..., 1:width // 2 + 1].flip(-1)
    return torch.cat([left, right], dim=-1)


class Sp2PSReference:
    """The reference maps' spectra (and what compares them) made once, for many candidates' maps.

    ``Sp2PSReference(ref_maps, config).compare(cand_maps)`` equals ``sp2ps(ref_maps, cand_maps,
    config)``; keeping the object saves, for every further candidate, the reference's FFT and its
    spectrum's SSIM moments (``"ssim"``) or norm (``"cosine"``), and the spatial SSIM moments.

    maps: the reference maps ``(..., H, W)``; spectra: their :func:`spectrum` ``(..., H, W)`` float32.
    """

    def __init__(self, maps: torch.Tensor, config: Sp2PSConfig = Sp2PSConfig()):
        self.config = config
        self.maps = maps
        self.spectra = spectrum(maps, config.spectrum)
        if config.spectral_similarity == "ssim":
            self._spectral = SSIMReference(self.spectra, config)
        else:
            self._squared_norms = (self.spectra * self.spectra).sum(dim=(-2, -1))
        self._spatial: SSIMReference | None = None  # made when first needed

    def spectral_similarity(self, maps: torch.Tensor) -> torch.Tensor:
        """Similarity in [0, 1] of each reference spectrum and the spectrum of ``maps (..., H, W)``: ``(...)``."""
        if maps.shape != self.maps.shape:
            raise ValueError(f"spectral_similarity needs maps of one shape, got {tuple(self.maps.shape)} "
                             f"and {tuple(maps.shape)}.")
        spectra = spectrum(maps, self.config.spectrum)
        if self.config.spectral_similarity == "ssim":
            return self._spectral.compare(spectra)
        dot = (self.spectra * spectra).sum(dim=(-2, -1))
        squared_norms = (spectra * spectra).sum(dim=(-2, -1))
        both_empty = (self._squared_norms == 0) & (squared_norms == 0)
        cosine = dot / torch.sqrt(self._squared_norms * squared_norms).clamp(min=torch.finfo(dot.dtype).tiny)
        return torch.where(both_empty, torch.ones_like(cosine), cosine).clamp(0.0, 1.0)

    def compare(self, maps: torch.Tensor, spatial: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image Sp2PS of the reference maps and ``maps (..., H, W)`` -> ``(...)`` float32 in [0, 1].

        ``spatial (...)``: the SSIM of the pairs when already computed with this config's SSIM parameters.
        """
        if spatial is None:
            if self._spatial is None:
                self._spatial = SSIMReference(self.maps, self.config)
            spatial = self._spatial.compare(maps)
        return harmonic_mean(spatial.to(torch.float32), self.spectral_similarity(maps))


def spectral_similarity(maps_a: torch.Tensor, maps_b: torch.Tensor,
                        config: Sp2PSConfig = Sp2PSConfig()) -> torch.Tensor:
    """Similarity in [0, 1] of the spectra of each pair of maps ``(..., H, W)`` -> ``(...)``."""
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"spectral_similarity needs maps of one shape, got {tuple(maps_a.shape)} "
                         f"and {tuple(maps_b.shape)}.")
    return Sp2PSReference(maps_a, config).spectral_similarity(maps_b).to(maps_a.dtype)


def harmonic_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``2ab / (a + b)`` of non-negative tensors (broadcast together); 0 where both are 0."""
    total = a + b
    return torch.where(total > 0, 2 * a * b / total.clamp(min=torch.finfo(total.dtype).tiny),
                       torch.zeros_like(total))


def sp2ps(ref_maps: torch.Tensor, cand_maps: torch.Tensor, config: Sp2PSConfig = Sp2PSConfig(),
          spatial: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image Sp2PS of reference and candidate maps ``(..., H, W)`` in [0, 1] -> ``(...)`` in [0, 1].

    The harmonic mean of the spatial SSIM and the spectral similarity; runs on the maps' device.
    ``spatial (...)``: the SSIM of the pairs when already computed with ``config``. To compare one
    reference with many candidates, keep an :class:`Sp2PSReference` (this function makes one per call).
    """
    if ref_maps.shape != cand_maps.shape:
        raise ValueError(f"sp2ps needs maps of one shape, got {tuple(ref_maps.shape)} and {tuple(cand_maps.shape)}.")
    return Sp2PSReference(ref_maps, config).compare(cand_maps, spatial).to(ref_maps.dtype)
