"""Which pruning ratio can I trust? Our rule, read from a results Dataset.

The PE-score paper uses PE to choose a pruning ratio, but does not publish a procedure, so
pescore_nb applies this one (ours, not the paper's):

1. For every model, layer and CAM method, the **PE** is :func:`pescore_nb.score` (the
   class-weighted mean of the per-image PE) and the **accuracy drop** is the reference's
   ``accuracy`` minus the model's, in absolute terms (0.02 = two percentage points).
2. A pruned model is **trustworthy** at a layer and CAM method when its PE is at least
   ``pe_threshold`` *and* its accuracy drop is at most ``max_accuracy_drop`` (both compared up
   to a rounding tolerance of 1e-9, so an accuracy of 0.98 against 1.0 drops by 0.02, not more).
3. For each pruning method (the ``pruner`` coordinate), its models are taken in increasing
   ratio. The **trusted ratio** is the largest ratio up to which *every* model is trustworthy:
   the walk stops at the first model that fails, even if a larger ratio happens to pass again
   (a non-monotone curve is noise or luck, not a safe operating point). When the smallest ratio
   already fails, the trusted ratio is 0: do not prune with that method.
4. At the first failing ratio we name what failed (``"pe"``, ``"accuracy"`` or both) and the
   **classes that fail first**: every class whose own PE (:func:`pescore_nb.by_class`) is below
   ``pe_threshold`` there, lowest first. The weighted mean can hide one class that lost its
   attention; this list shows it.

``recommend`` returns one row per (pruner, layer, method); ``assess`` gives the per-model
verdicts behind it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from . import schema
from .scores import by_class, score

TOLERANCE = 1e-9  # floating-point slack in both comparisons
COLUMNS = ("pruner", "layer", "method", "ratio", "model", "pe", "accuracy_drop",
           "first_failure", "fails_on", "failing_classes")


def assess(ds: xr.Dataset, pe_threshold: float = 0.8, max_accuracy_drop: float = 0.02, *,
           variable: str = schema.PE, how: str | None = None) -> xr.Dataset:
    """Per-model verdicts ``(model, layer, method)``: ``pe``, ``accuracy_drop``, ``pe_ok``,
    ``accuracy_ok`` and ``trustworthy`` (both), against the reference ``model[0]``.

    ``variable`` is the score to threshold (``"pe"``, or ``"sp2ps"`` when stored); ``how``
    overrides the class weights as in :func:`pescore_nb.score`.
    """
    _check_bounds(pe_threshold, max_accuracy_drop)
    pe = score(ds, variable, how).compute()
    accuracy_drop = float(ds[schema.ACCURACY][0]) - ds[schema.ACCURACY]
    pe_ok = pe >= pe_threshold - TOLERANCE
    accuracy_ok = (accuracy_drop <= max_accuracy_drop + TOLERANCE).broadcast_like(pe_ok)
    return xr.Dataset({"pe": pe, "accuracy_drop": accuracy_drop, "pe_ok": pe_ok,
                       "accuracy_ok": accuracy_ok, "trustworthy": pe_ok & accuracy_ok},
                      attrs={"pe_threshold": pe_threshold, "max_accuracy_drop": max_accuracy_drop,
                             "variable": variable})


def recommend(ds: xr.Dataset, pe_threshold: float = 0.8, max_accuracy_drop: float = 0.02, *,
              variable: str = schema.PE, how: str | None = None) -> pd.DataFrame:
    """The largest trusted ratio of each pruning method, layer and CAM method (module docstring).

    Returns a DataFrame, one row per (pruner, layer, method), with the columns
    ``ratio`` (the trusted ratio; 0.0 when even the smallest ratio fails), ``model`` (the
    candidate at that ratio, ``None`` when none is trusted), ``pe`` and ``accuracy_drop`` there
    (NaN when none), ``first_failure`` (the first failing ratio; NaN when every ratio passes),
    ``fails_on`` (``"pe"``, ``"accuracy"``, ``"pe+accuracy"``, or ``""``) and
    ``failing_classes`` (class names below ``pe_threshold`` at ``first_failure``, lowest PE first).
    A table rather than a Dataset: its rows are few, its class lists ragged, and it prints and
    exports (``.to_csv``) as it is.
    """
    verdicts = assess(ds, pe_threshold, max_accuracy_drop, variable=variable, how=how)
    class_pe = None  # by_class is computed once, only when some ratio fails
    rows = []
    for pruner in _pruners(ds):
        models = _by_ratio(ds, pruner)
        for layer in ds[schema.LAYER].values.tolist():
            for method in ds[schema.CAM].values.tolist():
                at = verdicts.sel({schema.LAYER: layer, schema.CAM: method})
                passing = at["trustworthy"].sel(model=models).values
                n_trusted = len(models) if passing.all() else int(np.argmin(passing))
                trusted = models[n_trusted - 1] if n_trusted else None
                row = {"pruner": pruner, "layer": layer, "method": method,
                       "ratio": _ratio(ds, trusted) if trusted else 0.0, "model": trusted,
                       "pe": float(at["pe"].sel(model=trusted)) if trusted else np.nan,
                       "accuracy_drop": float(at["accuracy_drop"].sel(model=trusted)) if trusted else np.nan,
                       "first_failure": np.nan, "fails_on": "", "failing_classes": []}
                if n_trusted < len(models):
                    failed = models[n_trusted]
                    if class_pe is None:
                        class_pe = by_class(ds, variable).compute()
                    row.update(first_failure=_ratio(ds, failed), fails_on=_what_failed(at.sel(model=failed)),
                               failing_classes=_classes_below(
                                   class_pe.sel({schema.MODEL: failed, schema.LAYER: layer, schema.CAM: method}), pe_threshold))
                rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _check_bounds(pe_threshold: float, max_accuracy_drop: float) -> None:
    if not 0 <= pe_threshold <= 1:
        raise ValueError(f"pe_threshold must be in [0, 1] (PE is a score in [0, 1]), got {pe_threshold!r}.")
    if not 0 <= max_accuracy_drop <= 1:
        raise ValueError(f"max_accuracy_drop must be in [0, 1] (0.02 = two percentage points), "
                         f"got {max_accuracy_drop!r}.")


def _pruners(ds: xr.Dataset) -> list[str]:
    pruners = [p for p in dict.fromkeys(ds[schema.PRUNER].values.tolist()) if p != schema.UNPRUNED]
    if not pruners:
        raise ValueError(f"The Dataset has no pruned model (every 'pruner' is {schema.UNPRUNED!r}); "
                         "evaluate some candidates first.")
    return pruners


def _by_ratio(ds: xr.Dataset, pruner: str) -> list[str]:
    """Names of ``pruner``'s models by increasing ratio; ratios must be known and distinct."""
    mask = ds[schema.PRUNER].values == pruner
    names, ratios = ds[schema.MODEL].values[mask], ds[schema.RATIO].values[mask].astype(float)
    if np.isnan(ratios).any():
        raise ValueError(f"Pruner {pruner!r} has models without a ratio ({names[np.isnan(ratios)].tolist()}); "
                         "give each candidate its ratio (pescore_nb.prune.sweep records it).")
    if len(np.unique(ratios)) < len(ratios):
        raise ValueError(f"Pruner {pruner!r} has two models at one ratio ({dict(zip(names, ratios))}); "
                         "give them different pruner names so each pruner has one model per ratio.")
    return names[np.argsort(ratios)].tolist()


def _ratio(ds: xr.Dataset, model: str) -> float:
    return float(ds[schema.RATIO].sel(model=model))


def _what_failed(verdict: xr.Dataset) -> str:
    failed = [name for name, key in (("pe", "pe_ok"), ("accuracy", "accuracy_ok")) if not bool(verdict[key])]
    return "+".join(failed)


def _classes_below(class_pe: xr.DataArray, pe_threshold: float) -> list[str]:
    """Names of the classes ``(class,)`` whose PE is below the threshold, lowest first."""
    order = np.argsort(class_pe.values, kind="stable")
    below = class_pe.values[order] < pe_threshold - TOLERANCE
    return [str(name) for name in class_pe[schema.CLASS_NAME].values[order][below]]
