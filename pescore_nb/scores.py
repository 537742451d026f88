"""Reduce a pescore_nb Dataset to the numbers of the metric: per-class and class-weighted PE."""
from __future__ import annotations

import warnings

import xarray as xr

from . import schema, structure


class DegenerateMapWarning(UserWarning):
    """Some maps entering a score were constant (no CAM signal); see the ``degenerate`` variable."""


def by_class(ds: xr.Dataset, variable: str = schema.PE, *, skipna: bool = False) -> xr.DataArray:
    """Mean of a per-image score over each class: ``(model, layer, cam, label)``.

    ``label`` holds the label values; its ``class_name`` coordinate their names. A NaN in
    ``ds[variable]`` raises (naming how many) unless ``skipna=True``, which leaves those images out.
    """
    _warn_if_degenerate(ds)
    values = _checked(ds, variable, skipna)
    labels = ds[schema.LABEL].load()  # grouping needs the labels' values, also in a lazily opened Dataset
    per_class = values.groupby(labels).mean(schema.IMAGE, skipna=skipna)
    names = _class_names(ds)
    return per_class.assign_coords(
        {schema.CLASS_NAME: (schema.LABEL, [names[label] for label in per_class[schema.LABEL].values])})


def score(ds: xr.Dataset, variable: str = schema.PE, class_weights: str | None = None, *,
          skipna: bool = False) -> xr.DataArray:
    """The class-weighted score ``sum_k w_k * mean_k``: ``(model, layer, cam)``.

    ``class_weights`` overrides the Dataset's ``PEConfig.class_weights`` (``"support"``: w_k =
    N_k / N, or ``"macro"``: w_k = 1 / K). With ``skipna=True`` images whose score is NaN are left
    out and the weights renormalised over what remains (N_k counts only finite scores; a class
    with none drops out); by default a NaN raises.
    """
    rule = structure.class_weight_rule(ds, class_weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateMapWarning)  # by_class would warn a second time
        per_class = by_class(ds, variable, skipna=skipna)
    _warn_if_degenerate(ds)
    counts = ds[variable].notnull().groupby(ds[schema.LABEL].load()).sum(schema.IMAGE)  # (..., label)
    present = (counts > 0).astype(float)
    weights = counts / counts.sum(schema.LABEL) if rule == "support" else present / present.sum(schema.LABEL)
    return (per_class.fillna(0.0) * weights).sum(schema.LABEL).rename(variable)


def _checked(ds: xr.Dataset, variable: str, skipna: bool) -> xr.DataArray:
    """``ds[variable]``, refused with the fix when it cannot be a per-image score in [0, 1]."""
    legacy = [name for name in schema.LEGACY_NAMES if name in ds.dims]
    if legacy:
        raise ValueError(f"This Dataset uses the dimension names of pescore_nb 0.1 ({legacy}); rename them with "
                         f"ds.rename({ {name: schema.LEGACY_NAMES[name] for name in legacy} }), or save and "
                         "pescore_nb.load it, which upgrades it.")
    if variable not in ds:
        raise KeyError(f"No variable {variable!r} in the Dataset; it has {sorted(map(str, ds.data_vars))}.")
    if ds.sizes.get(schema.IMAGE, 0) == 0:
        raise ValueError("The Dataset holds no images (an empty selection?); select at least one image per class.")
    values = ds[variable]
    if values.dtype.kind not in "fiub":
        raise ValueError(f"ds[{variable!r}] holds {values.dtype} values, not numbers; convert them, e.g. "
                         f"ds[{variable!r}] = ds[{variable!r}].astype(float).")
    if not skipna and values.dtype.kind == "f":
        missing = int(values.isnull().sum())
        if missing:
            raise ValueError(f"ds[{variable!r}] holds {missing} NaN values of {values.size}, which would make "
                             f"the score wrong; find them with ds[{variable!r}].isnull(), or pass skipna=True to "
                             "leave those images out (the class weights are renormalised).")
    outside = ((values < 0) | (values > 1)).any([dim for dim in values.dims if dim != schema.MODEL]).compute()
    if bool(outside.any()):
        models = ds[schema.MODEL].values[outside.values].tolist() if schema.MODEL in outside.dims else "all"
        raise ValueError(f"ds[{variable!r}] of {models} lies outside [0, 1], where every per-image score lies; "
                         "the Dataset was changed after evaluate: recompute it with pescore_nb.evaluate.")
    return values


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
