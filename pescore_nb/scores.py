"""Reduce a pescore_nb Dataset to the numbers of the metric: per-class and class-weighted PE."""
from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from . import schema
from .metrics import CLASS_WEIGHTS, PEConfig


class DegenerateMapWarning(UserWarning):
    """Some maps entering a score were constant (no CAM signal); see the ``degenerate`` variable."""


def class_weights(labels: np.ndarray, how: str = "support") -> xr.DataArray:
    """The weight of each class present in ``labels (N,)``, summing to 1, as a DataArray ``(class,)``.

    ``"support"``: w_k = N_k / N; ``"macro"``: w_k = 1 / K.
    """
    if how not in CLASS_WEIGHTS:
        raise ValueError(f"class weights must be one of {CLASS_WEIGHTS}, got {how!r}.")
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    weights = counts / counts.sum() if how == "support" else np.full(len(classes), 1.0 / len(classes))
    return xr.DataArray(weights, dims=schema.CLASS, coords={schema.CLASS: classes})


def by_class(ds: xr.Dataset, variable: str = schema.PE) -> xr.DataArray:
    """Mean of a per-image score over each class: ``(model, layer, method, class)``.

    ``class`` holds the label values; its ``class_name`` coordinate their names.
    """
    _warn_if_degenerate(ds)
    labels = ds[schema.LABEL].load()  # grouping needs the labels' values, also in a lazily opened Dataset
    per_class = ds[variable].groupby(labels).mean(schema.IMAGE)
    per_class = per_class.rename({schema.LABEL: schema.CLASS})
    names = _class_names(ds)
    return per_class.assign_coords(
        {schema.CLASS_NAME: (schema.CLASS, [names[label] for label in per_class[schema.CLASS].values])})


def score(ds: xr.Dataset, variable: str = schema.PE, how: str | None = None) -> xr.DataArray:
    """The class-weighted score ``sum_k w_k * mean_k``: ``(model, layer, method)``.

    ``how`` overrides the Dataset's ``PEConfig.class_weights`` (``"support"`` or ``"macro"``).
    """
    how = how or PEConfig.from_attrs(ds.attrs).class_weights
    weights = class_weights(ds[schema.LABEL].values, how)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateMapWarning)  # by_class would warn a second time
        per_class = by_class(ds, variable)
    _warn_if_degenerate(ds)
    return (per_class * weights).sum(schema.CLASS).rename(variable)


def _class_names(ds: xr.Dataset) -> dict:
    labels = ds[schema.LABEL].values
    names = ds[schema.CLASS_NAME].values if schema.CLASS_NAME in ds.coords else labels.astype(str)
    return dict(zip(labels.tolist(), [str(name) for name in names]))


def _warn_if_degenerate(ds: xr.Dataset) -> None:
    if schema.DEGENERATE not in ds:
        return
    count = int(ds[schema.DEGENERATE].sum())
    if count:
        warnings.warn(f"{count} of {ds[schema.DEGENERATE].size} maps are degenerate (constant, no CAM "
                      "signal); their SSIM and IoU say nothing about attention. Inspect "
                      "ds['degenerate'], or drop those images with ds.where(~ds.degenerate.any('model')).",
                      DegenerateMapWarning, stacklevel=3)
