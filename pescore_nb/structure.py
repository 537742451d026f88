"""The one reader of a results Dataset's structure: which model is the reference, which are the
controls, which pruners exist and their models by ratio, the class weights, and the default
thresholds of the trust rule. Every view (scores, stats, recommend, plot, explorer, CLI) asks here.

The reference is the model whose ``role`` coordinate is ``"reference"``, wherever it stands in
the ``model`` dimension; controls (``role == "control"``) never enter a pruner's ratio walk.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from . import schema
from .metrics import CLASS_WEIGHTS, PEConfig

# Defaults of the trust rule (see pescore_nb.recommend).
PE_THRESHOLD = 0.8        # the absolute rule, and the fallback when no control was evaluated
MAX_ACCURACY_DROP = 0.02  # two accuracy points
MARGIN = 0.05             # non-inferiority margin of a candidate's PE against control:finetune
LEVEL = 0.95              # one-sided level of that bootstrap bound


def roles(ds: xr.Dataset) -> np.ndarray:
    """The ``role`` of each model ``(model,)``; a Dataset without roles has its first model as reference."""
    if schema.ROLE in ds.coords:
        return np.asarray(ds[schema.ROLE].values).astype(str)
    fallback = np.full(ds.sizes[schema.MODEL], schema.CANDIDATE, dtype=object)
    fallback[0] = schema.REFERENCE
    return fallback.astype(str)


def reference(ds: xr.Dataset) -> str:
    """The name of the reference model (the one whose role is ``reference``)."""
    names = models_with_role(ds, schema.REFERENCE)
    if len(names) != 1:
        raise ValueError(f"The Dataset must hold exactly one model with role '{schema.REFERENCE}', found "
                         f"{names}; select it with ds.sel(model=[...]) together with its candidates.")
    return names[0]


def models_with_role(ds: xr.Dataset, role: str) -> list[str]:
    """Names of the models with ``role``, in Dataset order."""
    return [str(name) for name, found in zip(ds[schema.MODEL].values, roles(ds)) if found == role]


def controls(ds: xr.Dataset) -> list[str]:
    """Names of the control models (``control:finetune``, ``control:twin``, ...)."""
    return models_with_role(ds, schema.CONTROL)


def control(ds: xr.Dataset, name: str = schema.CONTROL_FINETUNE) -> str | None:
    """``name`` when the Dataset holds that control, else None."""
    return name if name in controls(ds) else None


def randomised(ds: xr.Dataset, layer: str) -> str | None:
    """The randomisation control of ``layer`` (``control:randomised@<layer>``) when the Dataset holds it."""
    return control(ds, schema.RANDOMISED_PREFIX + str(layer))


def pruners(ds: xr.Dataset) -> list[str]:
    """The pruners of the candidates, in Dataset order (``none`` and controls excluded)."""
    candidates = models_with_role(ds, schema.CANDIDATE)
    return [str(p) for p in dict.fromkeys(ds[schema.PRUNER].sel({schema.MODEL: candidates}).values.tolist())
            if p != schema.UNPRUNED]


def by_ratio(ds: xr.Dataset, pruner: str) -> list[str]:
    """Names of ``pruner``'s candidates by increasing ratio; ratios must be known and distinct."""
    candidates = ds[schema.MODEL].values[(roles(ds) == schema.CANDIDATE)
                                         & (ds[schema.PRUNER].values.astype(str) == pruner)]
    ratios = ds[schema.RATIO].sel({schema.MODEL: candidates}).values.astype(float)
    if len(candidates) == 0:
        raise ValueError(f"No candidate was pruned by {pruner!r}; the pruners are {pruners(ds)}.")
    if np.isnan(ratios).any():
        raise ValueError(f"Pruner {pruner!r} has models without a ratio ({candidates[np.isnan(ratios)].tolist()}); "
                         "give each candidate its ratio (pescore_nb.prune.sweep records it).")
    if len(np.unique(ratios)) < len(ratios):
        raise ValueError(f"Pruner {pruner!r} has two models at one ratio ({dict(zip(candidates, ratios))}); "
                         "give them different pruner names so each pruner has one model per ratio.")
    return [str(name) for name in candidates[np.argsort(ratios)]]


def has_ratios(ds: xr.Dataset) -> bool:
    """True when every candidate has a pruner and a ratio, so ratio walks make sense."""
    candidates = models_with_role(ds, schema.CANDIDATE)
    found = ds.sel({schema.MODEL: candidates})
    return bool(candidates) and not np.isnan(found[schema.RATIO].values.astype(float)).any() and all(
        p not in (schema.UNPRUNED, schema.UNKNOWN_PRUNER) for p in found[schema.PRUNER].values.astype(str))


def class_weight_rule(ds: xr.Dataset, override: str | None = None) -> str:
    """``override``, else the Dataset's ``PEConfig.class_weights`` (``"support"`` or ``"macro"``)."""
    rule = override or PEConfig.from_attrs(ds.attrs).class_weights
    if rule not in CLASS_WEIGHTS:
        raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, got {rule!r}.")
    return rule


def weights_by_class(labels: np.ndarray, rule: str = "support") -> xr.DataArray:
    """The weight of each class present in ``labels (N,)``, summing to 1, as a DataArray ``(label,)``.

    ``"support"``: w_k = N_k / N; ``"macro"``: w_k = 1 / K.
    """
    if rule not in CLASS_WEIGHTS:
        raise ValueError(f"class_weights must be one of {CLASS_WEIGHTS}, got {rule!r}.")
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    weights = counts / counts.sum() if rule == "support" else np.full(len(classes), 1.0 / len(classes))
    return xr.DataArray(weights, dims=schema.LABEL, coords={schema.LABEL: classes})


def accuracy_drop(ds: xr.Dataset) -> xr.DataArray:
    """The reference's accuracy minus each model's ``(model,)`` (0.02 = two points lost)."""
    accuracy = ds[schema.ACCURACY]
    return float(accuracy.sel({schema.MODEL: reference(ds)})) - accuracy
