"""Confidence intervals and paired comparisons of class-weighted scores, by resampling images.

Both functions read a per-image score ``ds[variable]`` ``(..., image)`` (``pe`` by default; any
variable with an ``image`` dimension works) and the ``label`` coordinate, and weigh the classes as
:func:`pescore_nb.scores.score` does (``PEConfig.class_weights`` from the Dataset's attrs, or
``class_weights``). Resampling is *stratified*: every resample draws N_k images with replacement within
each class k, so the class weights stay fixed, as they are by design of the test set.

All resamples are drawn at once (in chunks of a few million draws) and reduced by matrix
products: no Python loop over resamples (see ``benchmarks/stats.py``).
"""
from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from . import schema, structure
from .scores import by_class, score

_DRAWS_PER_CHUNK = 1 << 22  # resample rows x images drawn at once: ~32 MB of float64 counts


def bootstrap(ds: xr.Dataset, variable: str = schema.PE, *, per_class: bool = False,
              n_resamples: int = 1000, level: float = 0.95, seed: int = 0,
              class_weights: str | None = None) -> xr.Dataset:
    """Stratified percentile-bootstrap interval of the class-weighted score, or of each class mean.

    Returns a Dataset with ``estimate`` (the score of all images, as ``scores.score`` or, with
    ``per_class``, ``scores.by_class``), ``low`` and ``high`` (the ``(1 -+ level) / 2`` quantiles of
    ``n_resamples`` resampled scores), over the dims of ``ds[variable]`` without ``image``
    (``(model, layer, cam)`` for ``pe``), plus ``label`` when ``per_class``.
    """
    values, labels, other_dims = _per_image(ds, variable)
    rule = structure.class_weight_rule(ds, class_weights)
    _warn_if_few(labels)
    resampled = _class_means(values, labels, n_resamples, np.random.default_rng(seed))  # (B, K, M)
    if per_class:
        estimate = by_class(ds, variable).transpose(*other_dims, schema.LABEL)
        resampled = np.moveaxis(resampled, 1, -1)  # (B, M, K)
    else:
        estimate = score(ds, variable, rule).transpose(*other_dims)
        resampled = np.einsum("bkm,k->bm", resampled, structure.weights_by_class(labels, rule).values)
    low, high = _percentile_interval(resampled, level)
    return _interval_dataset(estimate, low, high, variable, level, n_resamples, rule,
                             interval="stratified percentile bootstrap")


def compare(ds: xr.Dataset, model_a: str, model_b: str, variable: str = schema.PE, *,
            n_resamples: int = 1000, level: float = 0.95, seed: int = 0,
            class_weights: str | None = None) -> xr.Dataset:
    """Paired comparison of two models on the same images: score(a) - score(b).

    Returns a Dataset over the dims of ``ds[variable]`` without ``model`` and ``image``
    (``(layer, cam)`` for ``pe``) with ``estimate`` (the difference of the class-weighted
    scores), ``low``/``high`` (stratified percentile bootstrap of the per-image differences, the
    same images for both models) and ``p_value``: a two-sided sign-flip permutation test of
    "no difference". Under that null the two models are exchangeable on each image, so each
    per-image difference ``d_i`` is as likely to be ``-d_i``; ``p = (1 + #{|T*| >= |T|}) / (1 + n_resamples)``,
    ``T`` the class-weighted mean of ``d_i``, ``T*`` the same with random signs (Phipson & Smyth 2010).
    """
    models = ds[schema.MODEL].values.tolist()
    for name in (model_a, model_b):
        if name not in models:
            raise KeyError(f"compare: no model {name!r} in the Dataset; its models are {models}.")
    rule = structure.class_weight_rule(ds, class_weights)
    difference = ds[variable].sel({schema.MODEL: model_a}) - ds[variable].sel({schema.MODEL: model_b})
    values, labels, other_dims = _per_image(ds.assign({variable: difference}), variable)
    _warn_if_few(labels)
    rng = np.random.default_rng(seed)
    weights = structure.weights_by_class(labels, rule)
    resampled = np.einsum("bkm,k->bm", _class_means(values, labels, n_resamples, rng), weights.values)
    low, high = _percentile_interval(resampled, level)
    scores = score(ds, variable, rule)
    model_coords = [name for name, coord in ds.coords.items() if schema.MODEL in coord.dims]
    estimate = (scores.sel({schema.MODEL: model_a}) - scores.sel({schema.MODEL: model_b})).drop_vars(
        model_coords, errors="ignore")
    estimate = estimate.transpose(*other_dims)
    result = _interval_dataset(estimate, low, high, variable, level, n_resamples, rule,
                               interval="stratified percentile bootstrap of paired differences")
    image_weight = (weights.sel({schema.LABEL: labels}) / _class_sizes(labels)).values  # w_k / N_k, (N,)
    p_value = _sign_flip_p_value(values * image_weight, n_resamples, rng)
    return result.assign(p_value=(other_dims, p_value.reshape(estimate.shape))).assign_attrs(
        model_a=model_a, model_b=model_b, test="two-sided sign-flip permutation")


def stratified_upper_bound(values: np.ndarray, labels: np.ndarray, weights: np.ndarray, level: float = 0.95, *,
                           n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """One-sided upper bound of the class-weighted mean of each row of ``values (M, N)``: ``(M,)``.

    The ``level`` quantile of its stratified bootstrap distribution (the same resampled images for
    every row); ``labels (N,)``, ``weights (K,)`` in the order of ``np.unique(labels)``. Applied to
    paired differences PE(control) - PE(model), it covers the sampling of test images only, not the
    randomness of training (see :func:`pescore_nb.trust.seed_bound`).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level}.")
    resampled = np.einsum("bkm,k->bm", _class_means(np.asarray(values, dtype=np.float64), np.asarray(labels),
                                                   n_resamples, np.random.default_rng(seed)), weights)
    return np.quantile(resampled, level, axis=0)


def _per_image(ds: xr.Dataset, variable: str) -> tuple[np.ndarray, np.ndarray, tuple]:
    """``ds[variable]`` as float64 ``(M, N)`` (other dims flattened), the labels ``(N,)``, the other dims."""
    if variable not in ds:
        raise KeyError(f"No variable {variable!r} in the Dataset; it has {sorted(map(str, ds.data_vars))}.")
    data = ds[variable]
    if schema.IMAGE not in data.dims:
        raise ValueError(f"ds[{variable!r}] has dims {data.dims}, without '{schema.IMAGE}': only "
                         "per-image scores can be resampled.")
    other_dims = tuple(dim for dim in data.dims if dim != schema.IMAGE)
    values = data.transpose(*other_dims, schema.IMAGE).values.astype(np.float64)
    values = values.reshape(-1, data.sizes[schema.IMAGE])
    if not np.isfinite(values).all():
        raise ValueError(f"ds[{variable!r}] holds {int((~np.isfinite(values)).sum())} NaN or infinite "
                         "values; drop those images first, e.g. ds.dropna('image').")
    return values, ds[schema.LABEL].values, other_dims


class FewImagesWarning(UserWarning):
    """A class has fewer images than a stratified bootstrap needs for its interval to mean much."""


MIN_IMAGES_PER_CLASS = 10  # below this a class's resampled mean takes too few distinct values


def _warn_if_few(labels: np.ndarray) -> None:
    classes, counts = np.unique(labels, return_counts=True)
    few = {int(k): int(n) for k, n in zip(classes, counts) if n < MIN_IMAGES_PER_CLASS}
    if few:
        warnings.warn(f"Classes {few} (label: images) have fewer than {MIN_IMAGES_PER_CLASS} images: their resampled "
                      "means take few distinct values, so the interval is too narrow (zero wide with one image). "
                      "Evaluate more images per class.", FewImagesWarning, stacklevel=3)


def _class_sizes(labels: np.ndarray) -> np.ndarray:
    """N_k of each image's class ``(N,)``."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return counts[inverse]


def _chunks(n_resamples: int, n_images: int):
    """Sizes of the resample chunks, each about ``_DRAWS_PER_CHUNK`` draws of ``n_images``."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}.")
    rows = max(1, _DRAWS_PER_CHUNK // n_images)
    return [min(rows, n_resamples - start) for start in range(0, n_resamples, rows)]


def _class_means(values: np.ndarray, labels: np.ndarray, n_resamples: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Class means of ``values (M, N)`` over stratified resamples: ``(n_resamples, K, M)``, classes sorted.

    Each resample is stored as counts ``(rows, N_k)``: how often it drew each image of class k;
    the class means of all resamples are then one matrix product per class and chunk.
    """
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1 (bootstrap resamples), such as 1000; got {n_resamples!r}.")
    classes = np.unique(labels)
    means = np.empty((n_resamples, len(classes), len(values)))
    for k, label in enumerate(classes):
        class_values = np.ascontiguousarray(values[:, labels == label].T)  # (N_k, M)
        size = len(class_values)
        done = 0
        for rows in _chunks(n_resamples, size):
            drawn = rng.integers(0, size, size=(rows, size)) + (np.arange(rows) * size)[:, None]
            counts = np.bincount(drawn.ravel(), minlength=rows * size).reshape(rows, size)
            means[done:done + rows, k] = counts @ class_values / size
            done += rows
    return means


def _sign_flip_p_value(weighted: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Two-sided sign-flip p-value of ``T = sum_i weighted[:, i]`` for ``weighted (M, N)`` -> ``(M,)``."""
    observed = np.abs(weighted.sum(axis=1))
    extreme = np.zeros(len(weighted))
    for rows in _chunks(n_resamples, weighted.shape[1]):
        signs = rng.integers(0, 2, size=(rows, weighted.shape[1])).astype(np.float64) * 2 - 1
        extreme += (np.abs(signs @ weighted.T) >= observed * (1 - 1e-9)).sum(axis=0)
    return (1 + extreme) / (1 + n_resamples)


def _percentile_interval(resampled: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``(1 -+ level) / 2`` quantiles over the first axis of ``resampled (B, ...)``."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level}.")
    low, high = np.quantile(resampled, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return low, high


def _interval_dataset(estimate: xr.DataArray, low: np.ndarray, high: np.ndarray, variable: str,
                      level: float, n_resamples: int, class_weights: str, interval: str) -> xr.Dataset:
    return xr.Dataset(
        {"estimate": estimate.rename(None),
         "low": estimate.copy(data=low.reshape(estimate.shape)).rename(None),
         "high": estimate.copy(data=high.reshape(estimate.shape)).rename(None)},
        attrs={"variable": variable, "level": level, "n_resamples": n_resamples, "class_weights": class_weights,
               "interval": interval})
