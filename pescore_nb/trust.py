"""Which pruned model, and which pruning ratio, can I trust? Our rule, read from a results Dataset.

The PE-score paper uses PE to choose a pruning ratio but publishes no procedure, so pescore_nb
applies this one (ours, not the paper's). For every model, layer and CAM method:

1. **Accuracy**: the drop against the reference (``accuracy`` coordinate, absolute: 0.02 = two
   points) must be at most ``max_accuracy_drop`` (default 0.02).
2. **PE, calibrated** (``rule="control"``, the default when the Dataset holds ``control:finetune``):
   fine-tuning alone moves the maps, so a candidate is compared with the reference fine-tuned by
   the same recipe and seed, unpruned. Its PE must be *non-inferior* to that control's: the
   ``level`` (default 95 %) quantile of the stratified, class-weighted bootstrap distribution of
   the mean paired per-image difference PE(control) - PE(candidate) is at most ``margin`` (default
   0.05). The interval covers the sampling of test images, not the randomness of training:
   ``control:twin`` (the same recipe, another seed), when present, shows that scale.
3. **PE, absolute** (``rule="absolute"``, and the fallback without a control, which the output
   says): the class-weighted PE must be at least ``pe_threshold`` (default 0.8).
4. **The walk**: for each pruner, its candidates by increasing ratio; the *trusted ratio* is the
   largest ratio up to which every candidate passes (a later pass is luck, not a safe operating
   point); 0 when the smallest ratio already fails. At the first failure we name what failed
   and the classes that fail first (their own PE below the class's floor: the threshold, or the
   control's class PE minus the margin), lowest first. Controls never enter a walk.

Every output records the rule, its parameters, the control, and the twin's PE. Layers whose maps
are not reproducible or not model-dependent are flagged by :func:`layer_checks`.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import xarray as xr

from . import schema, structure
from .scores import by_class, score
from .stats import paired_upper_bound

TOLERANCE = 1e-9  # floating-point slack in every comparison
RULES = ("control", "absolute")
TWIN_MIN_PE = 0.5         # a layer whose twin scores below this has maps that training noise reshapes
RANDOMISED_MAX_PE = 0.3   # a layer whose randomised copy scores above this has maps that ignore the weights
COLUMNS = ("pruner", "layer", "cam", "ratio", "model", "pe", "accuracy_drop", "first_failure", "fails_on",
           "failing_classes", "accuracy_only_ratio", "rule", "control_pe", "twin_pe", "layer_usable")
GAP_COLUMNS = ("layer", "cam", "model_a", "model_b", "accuracy_a", "accuracy_b", "pe_a", "pe_b")


@dataclasses.dataclass(frozen=True)
class TrustRule:
    """The parameters of the trust rule (module docstring); ``rule=None`` picks ``"control"`` when the
    Dataset holds ``control``, else ``"absolute"``."""

    rule: str | None = None
    pe_threshold: float = structure.PE_THRESHOLD
    max_accuracy_drop: float = structure.MAX_ACCURACY_DROP
    margin: float = structure.MARGIN
    level: float = structure.LEVEL
    control: str = schema.CONTROL_FINETUNE
    n_resamples: int = 2000
    seed: int = 0

    def __post_init__(self):
        if self.rule is not None and self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES} (or None to choose by the Dataset), got {self.rule!r}.")
        for name in ("pe_threshold", "max_accuracy_drop", "margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1] (a share: 0.02 = two points), got {value!r}.")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {self.level!r}.")

    def resolved(self, ds: xr.Dataset) -> str:
        """The rule applied to ``ds``: ``"control"`` needs the control model in it."""
        has_control = structure.control(ds, self.control) is not None
        if self.rule == "control" and not has_control:
            raise ValueError(f"rule='control' needs the model {self.control!r} in the Dataset (role control); "
                             "make it with prune.sweep(..., finetune=...) or use rule='absolute'.")
        return self.rule or ("control" if has_control else "absolute")

    def describe(self, ds: xr.Dataset) -> str:
        """One sentence naming the rule as applied to ``ds``."""
        accuracy = f"accuracy drop <= {self.max_accuracy_drop:g}"
        if self.resolved(ds) == "control":
            return (f"{accuracy} and PE non-inferior to {self.control}: the {self.level:.0%} one-sided bootstrap "
                    f"bound of PE({self.control}) - PE(candidate) <= {self.margin:g}")
        fallback = "" if self.rule == "absolute" else f" (fallback: no {self.control} in the Dataset)"
        return f"{accuracy} and PE >= {self.pe_threshold:g}{fallback}"


def assess(ds: xr.Dataset, *, variable: str = schema.PE, class_weights: str | None = None,
           **rule: object) -> xr.Dataset:
    """Per-model verdicts ``(model, layer, cam)`` by the trust rule (module docstring).

    Variables: ``pe`` (class-weighted), ``accuracy_drop``, ``bound`` (the bootstrap bound of
    PE(control) - PE(model); NaN under the absolute rule), ``pe_ok``, ``accuracy_ok``,
    ``trustworthy`` (both), and ``control_pe`` / ``twin_pe`` ``(layer, cam)`` (NaN when absent).
    ``rule`` keywords are the fields of :class:`TrustRule`; the attrs record them and the rule
    applied. ``variable`` is the score judged (``"pe"``, or ``"sp2ps"`` when stored).
    """
    trust_rule = TrustRule(**rule)
    applied = trust_rule.resolved(ds)
    pe = score(ds, variable, class_weights).compute()
    accuracy_drop = structure.accuracy_drop(ds)
    if applied == "control":
        bound = paired_upper_bound(ds, trust_rule.control, variable, level=trust_rule.level,
                                   n_resamples=trust_rule.n_resamples, seed=trust_rule.seed,
                                   class_weights=class_weights).transpose(*pe.dims)
        pe_ok = bound <= trust_rule.margin + TOLERANCE
    else:
        bound = xr.full_like(pe, np.nan)
        pe_ok = pe >= trust_rule.pe_threshold - TOLERANCE
    accuracy_ok = (accuracy_drop <= trust_rule.max_accuracy_drop + TOLERANCE).broadcast_like(pe_ok)
    return xr.Dataset(
        {"pe": pe, "accuracy_drop": accuracy_drop, "bound": bound, "pe_ok": pe_ok, "accuracy_ok": accuracy_ok,
         "trustworthy": pe_ok & accuracy_ok, "control_pe": _model_score(pe, structure.control(ds, trust_rule.control)),
         "twin_pe": _model_score(pe, structure.control(ds, schema.CONTROL_TWIN))},
        attrs={**dataclasses.asdict(trust_rule), "rule": applied, "rule_text": trust_rule.describe(ds),
               "variable": variable, "control": trust_rule.control if applied == "control" else ""})


def recommend(ds: xr.Dataset, *, variable: str = schema.PE, class_weights: str | None = None,
              **rule: object) -> pd.DataFrame:
    """The largest trusted ratio of each pruner, layer and CAM method (module docstring).

    One row per (pruner, layer, cam) with the columns of :data:`COLUMNS`: ``ratio`` (trusted; 0.0
    when none), ``model`` (the candidate there, None when none), its ``pe`` and ``accuracy_drop``
    (NaN when none), ``first_failure`` (NaN when every ratio passes), ``fails_on`` (``"pe"``,
    ``"accuracy"``, ``"pe+accuracy"`` or ``""``), ``failing_classes``, ``accuracy_only_ratio`` (what
    the walk would trust on the accuracy budget alone, the usual practice), and the ``rule`` sentence,
    ``control_pe``, ``twin_pe`` and ``layer_usable`` (:func:`layer_checks`) recorded on every row.
    The table's ``attrs`` hold the rule's parameters.
    """
    verdicts = assess(ds, variable=variable, class_weights=class_weights, **rule)
    checks = layer_checks(ds, variable=variable, class_weights=class_weights)
    floors = None  # per-class floors are computed once, only when some ratio fails
    rows = []
    for pruner in structure.pruners(ds):
        models = structure.by_ratio(ds, pruner)
        for layer in ds[schema.LAYER].values.tolist():
            for cam in ds[schema.CAM].values.tolist():
                where = {schema.LAYER: layer, schema.CAM: cam}
                at = verdicts.sel(where)
                n_trusted = _passing_prefix(at["trustworthy"].sel({schema.MODEL: models}).values)
                n_accurate = _passing_prefix(at["accuracy_ok"].sel({schema.MODEL: models}).values)
                trusted = models[n_trusted - 1] if n_trusted else None
                row = {"pruner": pruner, "layer": layer, "cam": cam,
                       "ratio": _ratio(ds, trusted) if trusted else 0.0, "model": trusted,
                       "pe": float(at["pe"].sel({schema.MODEL: trusted})) if trusted else np.nan,
                       "accuracy_drop": float(at["accuracy_drop"].sel({schema.MODEL: trusted})) if trusted else np.nan,
                       "first_failure": np.nan, "fails_on": "", "failing_classes": [],
                       "accuracy_only_ratio": _ratio(ds, models[n_accurate - 1]) if n_accurate else 0.0,
                       "rule": verdicts.attrs["rule_text"], "control_pe": float(at["control_pe"]),
                       "twin_pe": float(at["twin_pe"]), "layer_usable": bool(checks["usable"].sel(where))}
                if n_trusted < len(models):
                    failed = models[n_trusted]
                    if floors is None:
                        floors = _class_floors(ds, verdicts, variable)
                        class_pe = by_class(ds, variable).compute()
                    row.update(first_failure=_ratio(ds, failed), fails_on=_what_failed(at.sel({schema.MODEL: failed})),
                               failing_classes=_classes_below(class_pe.sel({schema.MODEL: failed, **where}),
                                                              floors.sel(where)))
                rows.append(row)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table.attrs.update(verdicts.attrs)
    return table


def attention_gaps(ds: xr.Dataset, accuracy_points: float = 0.01, pe_gap: float = 0.1, *,
                   variable: str = schema.PE, class_weights: str | None = None) -> pd.DataFrame:
    """Pairs of candidates (controls excluded) whose accuracies differ by at most ``accuracy_points``
    but whose PE differs by at least ``pe_gap`` at some layer and CAM method: the paper's finding,
    that accuracy can hold while attention drifts. Columns :data:`GAP_COLUMNS`, ``pe_a >= pe_b``,
    largest PE gap first; empty when there is no such pair.
    """
    candidates = structure.models_with_role(ds, schema.CANDIDATE)
    pe = score(ds, variable, class_weights).sel({schema.MODEL: candidates}).compute()
    accuracy = ds[schema.ACCURACY].sel({schema.MODEL: candidates}).values.astype(float)
    rows = []
    for i, a in enumerate(candidates):
        for j, b in enumerate(candidates[i + 1:], start=i + 1):
            if abs(accuracy[i] - accuracy[j]) > accuracy_points + TOLERANCE:
                continue
            for layer in pe[schema.LAYER].values.tolist():
                for cam in pe[schema.CAM].values.tolist():
                    where = {schema.LAYER: layer, schema.CAM: cam}
                    pe_a, pe_b = float(pe.sel(where)[i]), float(pe.sel(where)[j])
                    if abs(pe_a - pe_b) >= pe_gap - TOLERANCE:
                        high, low = (i, j) if pe_a >= pe_b else (j, i)
                        rows.append({"layer": layer, "cam": cam, "model_a": candidates[high],
                                     "model_b": candidates[low], "accuracy_a": accuracy[high],
                                     "accuracy_b": accuracy[low], "pe_a": max(pe_a, pe_b), "pe_b": min(pe_a, pe_b)})
    table = pd.DataFrame(rows, columns=list(GAP_COLUMNS))
    order = np.argsort(-(table["pe_a"] - table["pe_b"]).to_numpy(), kind="stable")
    return table.iloc[order].reset_index(drop=True)


def layer_checks(ds: xr.Dataset, *, variable: str = schema.PE, class_weights: str | None = None,
                 twin_min_pe: float = TWIN_MIN_PE, randomised_max_pe: float = RANDOMISED_MAX_PE) -> xr.Dataset:
    """Can a layer and CAM method carry a verdict? ``(layer, cam)``.

    ``twin_pe``: PE of ``control:twin`` (same recipe, another seed); below ``twin_min_pe`` the maps
    are not reproducible. ``randomised_pe``: PE of ``control:randomised@<layer>`` (the reference
    with its weights re-initialised from the last layer down to this one, Adebayo et al. 2018); above
    ``randomised_max_pe`` the maps do not depend on the model. ``energy_in_mask``: the reference's
    mean share of map energy inside the object masks (when stored). Missing controls give NaN and
    do not flag. ``usable`` is False when a check fails; ``why`` says which.
    """
    pe = score(ds, variable, class_weights).compute()
    twin = _model_score(pe, structure.control(ds, schema.CONTROL_TWIN))
    randomised = xr.concat([_model_score(pe.sel({schema.LAYER: [layer]}), structure.randomised(ds, layer))
                            for layer in pe[schema.LAYER].values], dim=schema.LAYER)
    reference = structure.reference(ds)
    energy = (ds[schema.ENERGY_IN_MASK].sel({schema.MODEL: reference}).mean(schema.IMAGE).compute()
              if schema.ENERGY_IN_MASK in ds else xr.full_like(twin, np.nan))
    unreproducible = twin < twin_min_pe - TOLERANCE
    model_free = randomised > randomised_max_pe + TOLERANCE
    why = xr.where(unreproducible, f"twin PE below {twin_min_pe:g} (not reproducible)", "")
    why = xr.where(model_free, why + xr.where(unreproducible, "; ", "")
                   + f"randomised copy's PE above {randomised_max_pe:g} (not model-dependent)", why)
    energy = energy.drop_vars([name for name in energy.coords if name not in (schema.LAYER, schema.CAM)])
    return xr.Dataset({"twin_pe": twin, "randomised_pe": randomised.transpose(*twin.dims),
                       "energy_in_mask": energy, "usable": ~(unreproducible | model_free), "why": why},
                      attrs={"twin_min_pe": twin_min_pe, "randomised_max_pe": randomised_max_pe})


def _model_score(pe: xr.DataArray, model: str | None) -> xr.DataArray:
    """``pe`` of ``model`` ``(layer, cam)`` without model coordinates; NaN when ``model`` is None."""
    template = pe.isel({schema.MODEL: 0}, drop=True)
    template = template.drop_vars([name for name in template.coords if name not in (schema.LAYER, schema.CAM)])
    if model is None:
        return xr.full_like(template, np.nan, dtype=float)
    return template.copy(data=pe.sel({schema.MODEL: model}).values.astype(float))


def _class_floors(ds: xr.Dataset, verdicts: xr.Dataset, variable: str) -> xr.DataArray:
    """The PE below which a class counts as failing ``(layer, cam, label)``."""
    control = verdicts.attrs["control"]
    if control:
        floor = by_class(ds, variable).sel({schema.MODEL: control}, drop=True) - verdicts.attrs["margin"]
        return floor.drop_vars([name for name in floor.coords if name not in (schema.LAYER, schema.CAM, schema.LABEL)])
    return xr.full_like(verdicts["control_pe"], verdicts.attrs["pe_threshold"])


def _passing_prefix(passing: np.ndarray) -> int:
    """How many of ``passing (R,)`` pass before the first failure."""
    return len(passing) if passing.all() else int(np.argmin(passing))


def _ratio(ds: xr.Dataset, model: str) -> float:
    return float(ds[schema.RATIO].sel({schema.MODEL: model}))


def _what_failed(verdict: xr.Dataset) -> str:
    failed = [name for name, key in (("pe", "pe_ok"), ("accuracy", "accuracy_ok")) if not bool(verdict[key])]
    return "+".join(failed)


def _classes_below(class_pe: xr.DataArray, floor: xr.DataArray) -> list[str]:
    """Names of the classes ``(label,)`` whose PE is below their floor, lowest PE first."""
    below = (class_pe < floor - TOLERANCE).values
    order = np.argsort(class_pe.values, kind="stable")
    return [str(name) for name in class_pe[schema.CLASS_NAME].values[order][below[order]]]
