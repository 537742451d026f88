"""Which pruned model, and which pruning ratio, can I trust? Our rule, read from a results Dataset.

The PE-score paper uses PE to choose a pruning ratio but publishes no procedure, so pescore_nb
applies this one (ours, not the paper's). Verdicts are given per *group*: a candidate made with
one or several fine-tuning seeds (``"l2@0.10/seed0"``, ``"l2@0.10/seed1"``, ...: the group
``"l2@0.10"``, see :func:`pescore_nb.structure.seed_groups`). For every group, layer and CAM method:

1. **Accuracy**: the drop of the group's mean accuracy over its seeds against the reference
   (absolute: 0.02 = two points) must be at most ``max_accuracy_drop`` (default 0.02).
2. **PE, calibrated** (``rule="control"``, the default when the Dataset holds ``control:finetune``):
   fine-tuning alone moves the maps, so each seed's candidate is paired with the reference
   fine-tuned by the same recipe and the *same seed*, unpruned. Its PE must be *non-inferior* to
   that control's: a one-sided ``level`` (default 95 %) upper bound of the mean gap
   PE(control) - PE(candidate) must be at most ``margin`` (default 0.05). :func:`seed_bound`
   computes it from the per-image gaps ``g[s, i]`` of the S seeds:

   - S >= 2 (the bound covers the test images drawn *and* the training seeds):
     ``bound = d + t(level, nu) * sqrt(s2 / S + V)``, where ``d`` is the mean over seeds of each
     seed's class-weighted mean gap, ``s2`` the sample variance of those S means, ``V`` the
     stratified variance of the class-weighted mean of the seed-averaged per-image gaps
     (``sum_k w_k**2 var_k / N_k``) and ``nu`` the Welch-Satterthwaite degrees of freedom of the two
     parts (S - 1 and N - K). In words: the seeds' spread says how far another fine-tuning run
     could land, the images' spread how far another test set could.
   - S = 1 (the bound covers the test images only; training randomness is *not* covered, and
     every output says so): the ``level`` quantile of the stratified, class-weighted bootstrap
     distribution of the mean paired gap.

   A candidate seed without the control of the same seed, a class with fewer than
   ``min_images_per_class`` images (default 10: fewer give a bound too narrow to mean 95 %), or more
   than ``max_degenerate`` (10 %) of a seed's paired maps degenerate (constant, so SSIM and IoU say
   nothing) make a group *not assessable*: never a "yes" without evidence.
3. **PE, absolute** (``rule="absolute"``, and the fallback without a control, which the output
   says): the group's class-weighted PE, averaged over its seeds, must be at least
   ``pe_threshold`` (default 0.8).
4. **The walk**: for each pruner, its groups by increasing ratio; the *trusted ratio* is the
   largest ratio up to which every group is trusted (a later pass is luck, not a safe operating
   point); 0 when the smallest ratio already fails. The walk stops at a not-assessable group too.
   At the first failure we name what failed and the classes that fail first (their own PE below the
   class's floor: the threshold, or the control's class PE minus the margin), lowest first.
   Controls never enter a walk.

Every verdict is one of :data:`VERDICTS`. Every output records the rule, its parameters, the
control, and the twin's PE: ``control:twin``, the same recipe trained from scratch with another
seed, is a *scale* (how far retraining alone moves the maps); a candidate below it has drifted as
far as retraining from scratch would. Layers whose maps ignore the weights, or are no more
reproducible than a randomised model's, are flagged by :func:`layer_checks`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats as scipy_stats

from . import schema, structure
from .scores import by_class, score
from .stats import MIN_IMAGES_PER_CLASS, stratified_upper_bound

TOLERANCE = 1e-9  # floating-point slack in every comparison
RULES = ("control", "absolute")
TRUSTED, NOT_TRUSTED, NOT_ASSESSABLE = "trusted", "not trusted", "not assessable"
VERDICTS = (TRUSTED, NOT_TRUSTED, NOT_ASSESSABLE)
COVERS_IMAGES, COVERS_SEEDS = "test images", "test images and training seeds"
RANDOMISED_MAX_PE = 0.3   # a layer whose randomised copy scores above this has maps that ignore the weights
MIN_PE_ABOVE_RANDOMISED = 0.1  # the twin and control:finetune must score this far above the randomised copy
COLUMNS = ("pruner", "layer", "cam", "ratio", "model", "pe", "accuracy_drop", "n_seeds", "bound", "covers",
           "first_failure", "fails_on", "reason", "failing_classes", "accuracy_only_ratio", "rule", "control_pe", "twin_pe",
           "layer_usable")
GAP_COLUMNS = ("layer", "cam", "model_a", "model_b", "accuracy_a", "accuracy_b", "pe_a", "pe_b")


@dataclasses.dataclass(frozen=True)
class TrustRule:
    """The parameters of the trust rule (module docstring); ``rule=None`` picks ``"control"`` when the
    Dataset holds ``control``, else ``"absolute"``. ``n_resamples`` and ``seed`` drive the bootstrap
    of single-seed groups."""

    rule: str | None = None
    pe_threshold: float = structure.PE_THRESHOLD
    max_accuracy_drop: float = structure.MAX_ACCURACY_DROP
    margin: float = structure.MARGIN
    level: float = structure.LEVEL
    control: str = schema.CONTROL_FINETUNE
    n_resamples: int = 2000
    seed: int = 0
    max_degenerate: float = 0.1
    min_images_per_class: int = MIN_IMAGES_PER_CLASS

    def __post_init__(self):
        if self.rule is not None and self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES} (or None to choose by the Dataset), got {self.rule!r}.")
        for name in ("pe_threshold", "max_accuracy_drop", "margin", "max_degenerate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1] (a share: 0.02 = two points), got {value!r}.")
        if not 0 < self.level < 1:
            raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {self.level!r}.")
        for name, least in (("n_resamples", 1), ("min_images_per_class", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}.")

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
            return (f"{accuracy} and PE non-inferior to {self.control} of the same seed: the {self.level:.0%} "
                    f"one-sided upper bound of PE({self.control}) - PE(candidate) <= {self.margin:g}")
        fallback = "" if self.rule == "absolute" else f" (fallback: no {self.control} in the Dataset)"
        return f"{accuracy} and PE >= {self.pe_threshold:g}{fallback}"


def covers(n_seeds: int) -> str:
    """What the interval of a group with ``n_seeds`` seeds covers: ``"test images"`` with one seed,
    ``"test images and training seeds"`` with several."""
    return COVERS_SEEDS if n_seeds > 1 else COVERS_IMAGES


def seed_bound(gaps: np.ndarray, labels: np.ndarray, weights: np.ndarray, level: float = structure.LEVEL, *,
               n_resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """One-sided ``level`` upper bound of the class-weighted mean gap, over seeds and images.

    ``gaps (..., S, N)``: per-image gaps PE(control, s) - PE(candidate, s) of S seeds on the same N
    images; ``labels (N,)``; ``weights (K,)``: the class weights in the order of ``np.unique(labels)``,
    summing to 1. Returns ``(...)``. With S >= 2: ``d + t(level, nu) * sqrt(s2 / S + V)`` (module
    docstring); NaN when a class has fewer than two images. With S = 1: the stratified bootstrap
    (``n_resamples`` resamples drawn with ``seed``).
    """
    gaps = np.asarray(gaps, dtype=np.float64)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    weights = np.asarray(weights, dtype=np.float64)
    if gaps.ndim < 2 or gaps.shape[-1] != len(labels) or len(weights) != len(classes):
        raise ValueError(f"seed_bound needs gaps (..., S, N) with N = {len(labels)} labels and one weight per "
                         f"class ({len(classes)}), got gaps {gaps.shape} and {len(weights)} weights.")
    n_seeds = gaps.shape[-2]
    if n_seeds == 1:
        flat = gaps.reshape(-1, len(labels))
        return stratified_upper_bound(flat, labels, weights, level, n_resamples=n_resamples,
                                      seed=seed).reshape(gaps.shape[:-2])
    members = labels[None, :] == classes[:, None]                   # (K, N)
    class_means = gaps @ members.T / counts                           # (..., S, K)
    seed_means = class_means @ weights                                # (..., S)
    mean_gap = seed_means.mean(-1)
    between_seeds = seed_means.var(-1, ddof=1) / n_seeds              # a = s2 / S
    averaged = gaps.mean(-2)                                          # (..., N)
    deviations = (averaged[..., None, :] - (averaged @ members.T / counts)[..., :, None]) * members
    with np.errstate(invalid="ignore", divide="ignore"):
        class_variance = (deviations ** 2).sum(-1) / (counts - 1)     # (..., K); NaN for one image
        between_images = (weights ** 2 * class_variance / counts).sum(-1)  # V
        total = between_seeds + between_images
        freedom = total ** 2 / (between_seeds ** 2 / (n_seeds - 1) + between_images ** 2 / (len(labels) - len(classes)))
        quantile = scipy_stats.t.ppf(level, np.where(total > 0, freedom, 1.0))
    bound = np.where(total > 0, mean_gap + quantile * np.sqrt(total), mean_gap)  # 0: every gap the same
    return np.where(np.isnan(between_images), np.nan, bound)


def assess(ds: xr.Dataset, *, variable: str = schema.PE, class_weights: str | None = None,
           **rule: Any) -> xr.Dataset:
    """Verdicts by the trust rule (module docstring), per group ``(model, layer, cam)``.

    ``model`` holds the group names (:func:`pescore_nb.structure.seed_groups`; with one seed, the
    model names), with the coordinates ``role``, ``pruner``, ``ratio``, ``n_seeds``. Variables:
    ``pe`` (class-weighted, averaged over the seeds), ``pe_min`` / ``pe_max`` (its range over the
    seeds), ``accuracy`` (mean over the seeds; ``accuracy_min`` / ``accuracy_max`` its range), ``accuracy_drop``, ``bound`` (:func:`seed_bound` of
    PE(control) - PE(group); NaN under the absolute rule and for non-candidates), ``covers`` (what
    that bound covers), ``pe_ok``, ``accuracy_ok``, ``verdict`` (one of :data:`VERDICTS` for
    candidates, ``""`` for the reference and controls), ``reason`` (why, in words),
    ``trustworthy`` (verdict == "trusted"), ``below_twin`` (PE below the twin's), and
    ``control_pe`` / ``twin_pe`` ``(layer, cam)`` (NaN when absent). ``rule`` keywords are the
    fields of :class:`TrustRule`; the attrs record them and the rule applied. ``variable`` is the
    score judged (``"pe"``, or ``"sp2ps"`` when stored).
    """
    trust_rule = TrustRule(**rule)
    applied = trust_rule.resolved(ds)
    groups = structure.seed_groups(ds)
    structure.check_same_images(ds)
    model_pe = score(ds, variable, class_weights).compute()
    pe = structure.by_group(model_pe, ds)
    accuracy_drop = structure.by_group(structure.accuracy_drop(ds), ds)
    accuracy = structure.by_group(structure.accuracies(ds), ds)
    candidates = [group for group in groups if _group_role(ds, groups[group]) == schema.CANDIDATE]
    control_by_seed = _members_by_seed(ds, groups[trust_rule.control]) if applied == "control" else None
    pairs = {group: _pairs(_members_by_seed(ds, groups[group]), control_by_seed) for group in candidates}
    not_assessable = _not_assessable(ds, pe, pairs, trust_rule)
    bound = xr.full_like(pe, np.nan)
    if applied == "control":
        bound = _control_bounds(ds, pairs, trust_rule, variable, class_weights, bound)
        pe_ok = bound <= trust_rule.margin + TOLERANCE
    else:
        pe_ok = pe >= trust_rule.pe_threshold - TOLERANCE
    accuracy_ok = (accuracy_drop <= trust_rule.max_accuracy_drop + TOLERANCE).broadcast_like(pe_ok)
    control_pe = _group_score(pe, structure.control(ds, trust_rule.control))
    twin_pe = _group_score(pe, structure.control(ds, schema.CONTROL_TWIN))
    verdict, reason = _verdicts(pe, bound, pe_ok, accuracy_ok, accuracy_drop, candidates, not_assessable, trust_rule,
                                applied)
    n_seeds = [len(groups[group]) for group in groups]
    return xr.Dataset(
        {"pe": pe, "pe_min": structure.by_group(model_pe, ds, "min"),
         "pe_max": structure.by_group(model_pe, ds, "max"),
         "accuracy": accuracy, "accuracy_min": structure.by_group(structure.accuracies(ds), ds, "min"),
         "accuracy_max": structure.by_group(structure.accuracies(ds), ds, "max"), "accuracy_drop": accuracy_drop,
         "bound": bound,
         "covers": (schema.MODEL, [covers(n) if group in candidates else "" for group, n in zip(groups, n_seeds)]),
         "pe_ok": pe_ok, "accuracy_ok": accuracy_ok, "verdict": verdict, "reason": reason,
         "trustworthy": verdict == TRUSTED, "below_twin": pe < twin_pe - TOLERANCE,
         "control_pe": control_pe, "twin_pe": twin_pe},
        coords={"n_seeds": (schema.MODEL, n_seeds)},
        attrs={**dataclasses.asdict(trust_rule), "rule": applied, "rule_text": trust_rule.describe(ds),
               "variable": variable, "control": trust_rule.control if applied == "control" else ""})


def _group_role(ds: xr.Dataset, members: list[str]) -> str:
    return str(structure.roles(ds)[ds[schema.MODEL].values.astype(str).tolist().index(members[0])])


def _control_bounds(ds: xr.Dataset, pairs: dict[str, list | str], trust_rule: TrustRule, variable: str,
                    class_weights: str | None, bound: xr.DataArray) -> xr.DataArray:
    """:func:`seed_bound` of each candidate group against the control of the same seeds ``(model, layer, cam)``;
    NaN for the groups that cannot be paired."""
    labels = ds[schema.LABEL].values
    weights = structure.weights_by_class(labels, structure.class_weight_rule(ds, class_weights)).values
    per_image = ds[variable].transpose(schema.MODEL, schema.LAYER, schema.CAM, schema.IMAGE)
    bound = bound.copy()
    for group, paired in pairs.items():
        if isinstance(paired, str):
            continue
        controls, models = zip(*paired)
        gaps = (per_image.sel({schema.MODEL: list(controls)}).values.astype(np.float64)
                - per_image.sel({schema.MODEL: list(models)}).values.astype(np.float64))  # (S, L, C, N)
        values = seed_bound(np.moveaxis(gaps, 0, -2), labels, weights, trust_rule.level,
                            n_resamples=trust_rule.n_resamples, seed=trust_rule.seed)
        bound.loc[{schema.MODEL: group}] = values
    return bound


def _members_by_seed(ds: xr.Dataset, members: list[str]) -> dict[int, str]:
    seeds = dict(zip(ds[schema.MODEL].values.astype(str).tolist(), structure.seeds(ds).tolist()))
    return {seeds[member]: member for member in members}


def _pairs(candidate: dict[int, str], control: dict[int, str] | None) -> list[tuple[str | None, str]] | str:
    """(control, candidate) models paired by seed (the control ``None`` under the absolute rule), or why they
    cannot be. A user's model without a seed pairs with a control that has one model."""
    if control is None:
        return [(None, model) for model in candidate.values()]
    if list(candidate) == [schema.NO_SEED] and len(control) == 1:
        return [(next(iter(control.values())), candidate[schema.NO_SEED])]
    unpaired = [seed for seed in candidate if seed not in control]
    if unpaired:
        return (f"no control of seed {', '.join(map(str, unpaired))} (the control's seeds are "
                f"{', '.join(map(str, sorted(control)))}): fine-tune the control with the candidates' seeds")
    return [(control[seed], candidate[seed]) for seed in candidate]


def _not_assessable(ds: xr.Dataset, pe: xr.DataArray, pairs: dict[str, list | str],
                    trust_rule: TrustRule) -> xr.DataArray:
    """Why each candidate group cannot be judged at each layer and CAM method ``(model, layer, cam)``; ""
    where it can. A group is not assessable when any of its seeds is: no control of its seed, fewer than
    ``min_images_per_class`` images in a class (the control rule's bound), or more than ``max_degenerate``
    of its paired maps degenerate in either model."""
    why = xr.full_like(pe, "", dtype=object)
    labels, counts = np.unique(ds[schema.LABEL].values, return_counts=True)
    names = dict(zip(ds[schema.LABEL].values.tolist(), ds[schema.CLASS_NAME].values.tolist())) \
        if schema.CLASS_NAME in ds.coords else {}
    degenerate = ds[schema.DEGENERATE].transpose(schema.MODEL, schema.LAYER, schema.CAM, schema.IMAGE) \
        if schema.DEGENERATE in ds else None
    for group, paired in pairs.items():
        if isinstance(paired, str):
            why.loc[{schema.MODEL: group}] = paired
            continue
        controlled = any(control is not None for control, _ in paired)
        if controlled and counts.min() < trust_rule.min_images_per_class:
            few = labels[np.argmin(counts)].item()
            why.loc[{schema.MODEL: group}] = (
                f"class {names.get(few, few)} has {counts.min()} images: the bound needs at least "
                f"{trust_rule.min_images_per_class} in every class (evaluate more images)")
            continue
        if degenerate is None:
            continue
        worst = xr.concat([degenerate.sel({schema.MODEL: [m for m in pair if m is not None]}).any(schema.MODEL)
                           .mean(schema.IMAGE) for pair in paired], dim="pair").max("pair")  # (layer, cam)
        for layer in worst[schema.LAYER].values.tolist():
            for cam in worst[schema.CAM].values.tolist():
                share = float(worst.sel({schema.LAYER: layer, schema.CAM: cam}))
                if share > trust_rule.max_degenerate + TOLERANCE:
                    why.loc[{schema.MODEL: group, schema.LAYER: layer, schema.CAM: cam}] = (
                        f"{share:.0%} of its paired maps are degenerate (constant, no CAM signal; at most "
                        f"{trust_rule.max_degenerate:.0%} allowed): SSIM and IoU say nothing there")
    return why.astype(str)


def _verdicts(pe, bound, pe_ok, accuracy_ok, accuracy_drop, candidates, not_assessable, trust_rule, applied):
    """``verdict`` and ``reason`` ``(model, layer, cam)`` as strings."""
    verdict = xr.full_like(pe, "", dtype=object)
    reason = not_assessable.astype(object)
    for group in candidates:
        for layer in pe[schema.LAYER].values.tolist():
            for cam in pe[schema.CAM].values.tolist():
                at = {schema.MODEL: group, schema.LAYER: layer, schema.CAM: cam}
                if not_assessable.loc[at].item():
                    verdict.loc[at] = NOT_ASSESSABLE
                    continue
                failed = []
                if not bool(pe_ok.loc[at]):
                    failed.append(f"PE bound {float(bound.loc[at]):.3f} > margin {trust_rule.margin:g}"
                                  if applied == "control" else
                                  f"PE {float(pe.loc[at]):.3f} < {trust_rule.pe_threshold:g}")
                if not bool(accuracy_ok.loc[at]):
                    failed.append(f"accuracy drop {float(accuracy_drop.loc[{schema.MODEL: group}]):.3f} > "
                                  f"{trust_rule.max_accuracy_drop:g}")
                verdict.loc[at], reason.loc[at] = (NOT_TRUSTED, "; ".join(failed)) if failed else (TRUSTED, "")
    return verdict.astype(str), reason.astype(str)


def recommend(ds: xr.Dataset, *, variable: str = schema.PE, class_weights: str | None = None,
              **rule: Any) -> pd.DataFrame:
    """The largest trusted ratio of each pruner, layer and CAM method (module docstring).

    One row per (pruner, layer, cam) with the columns of :data:`COLUMNS`: ``ratio`` (trusted; 0.0
    when none), ``model`` (the group there, None when none), its ``pe`` (mean over seeds),
    ``accuracy_drop`` and ``bound`` (NaN when none), ``n_seeds`` (seeds per group) and ``covers``
    (what the bound covers: ``"test images"``, or ``"test images and training seeds"``),
    ``first_failure`` (NaN when every ratio passes), ``fails_on`` (``"pe"``, ``"accuracy"``,
    ``"pe+accuracy"``, ``"not assessable"`` or ``""``), ``reason`` (why it failed, in words),
    ``failing_classes``, ``accuracy_only_ratio``
    (what the walk would trust on the accuracy budget alone, the usual practice), and the ``rule``
    sentence, ``control_pe``, ``twin_pe`` and ``layer_usable`` (:func:`layer_checks`) recorded on
    every row. The table's ``attrs`` hold the rule's parameters.
    """
    verdicts = assess(ds, variable=variable, class_weights=class_weights, **rule)
    checks = layer_checks(ds, variable=variable, class_weights=class_weights)
    class_pe, floors = None, None  # per-class PEs and floors are computed once, only when some ratio fails
    rows = []
    for pruner in structure.pruners(ds):
        groups = structure.by_ratio(ds, pruner)
        for layer in ds[schema.LAYER].values.tolist():
            for cam in ds[schema.CAM].values.tolist():
                where = {schema.LAYER: layer, schema.CAM: cam}
                at = verdicts.sel(where).sel({schema.MODEL: groups})
                n_trusted = _passing_prefix(at["trustworthy"].values)
                n_accurate = _passing_prefix(at["accuracy_ok"].values)
                trusted = groups[n_trusted - 1] if n_trusted else None
                shown = at.isel({schema.MODEL: max(n_trusted - 1, 0)})
                row = {"pruner": pruner, "layer": layer, "cam": cam,
                       "ratio": float(shown[schema.RATIO]) if trusted else 0.0, "model": trusted,
                       "pe": float(shown["pe"]) if trusted else np.nan,
                       "accuracy_drop": float(shown["accuracy_drop"]) if trusted else np.nan,
                       "n_seeds": int(shown["n_seeds"]), "bound": float(shown["bound"]) if trusted else np.nan,
                       "covers": str(shown["covers"].item()),
                       "first_failure": np.nan, "fails_on": "", "reason": "", "failing_classes": [],
                       "accuracy_only_ratio": float(at[schema.RATIO][n_accurate - 1]) if n_accurate else 0.0,
                       "rule": verdicts.attrs["rule_text"], "control_pe": float(at["control_pe"]),
                       "twin_pe": float(at["twin_pe"]), "layer_usable": bool(checks["usable"].sel(where))}
                if n_trusted < len(groups):
                    failed = at.isel({schema.MODEL: n_trusted})
                    if class_pe is None or floors is None:
                        class_pe = structure.by_group(by_class(ds, variable).compute(), ds)
                        floors = _class_floors(class_pe, verdicts)
                    row.update(first_failure=float(failed[schema.RATIO]), fails_on=_what_failed(failed),
                               reason=str(failed["reason"].item()),
                               failing_classes=_classes_below(class_pe.sel({schema.MODEL: groups[n_trusted], **where}),
                                                              floors.sel(where)))
                rows.append(row)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["model"] = pd.Series([row["model"] for row in rows], dtype=object)  # pandas 3 would make None a NaN
    table.attrs.update(verdicts.attrs)
    return table


def attention_gaps(ds: xr.Dataset, accuracy_points: float = 0.01, pe_gap: float = 0.1, *,
                   variable: str = schema.PE, class_weights: str | None = None) -> pd.DataFrame:
    """Pairs of candidate groups (controls excluded; each a mean over its seeds, never two seeds of one
    group) whose accuracies differ by at most ``accuracy_points`` but whose PE differs by at least
    ``pe_gap`` at some layer and CAM method: the paper's finding, that accuracy can hold while
    attention drifts. Columns :data:`GAP_COLUMNS`, ``pe_a >= pe_b``, largest PE gap first; empty
    when there is no such pair.
    """
    candidates = [group for group, members in structure.seed_groups(ds).items()
                  if _group_role(ds, members) == schema.CANDIDATE]
    pe = structure.by_group(score(ds, variable, class_weights).compute(), ds).sel({schema.MODEL: candidates})
    accuracy = structure.by_group(structure.accuracies(ds), ds).sel({schema.MODEL: candidates}).values
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
                 randomised_max_pe: float = RANDOMISED_MAX_PE,
                 min_above_randomised: float = MIN_PE_ABOVE_RANDOMISED,
                 max_degenerate: float = TrustRule.max_degenerate) -> xr.Dataset:
    """Can a layer and CAM method carry a verdict? ``(layer, cam)``.

    A layer is flagged when its maps ignore the weights (the PE of ``control:randomised@<layer>``, the
    reference re-initialised from the last layer down to this one (Adebayo et al. 2018), is above
    ``randomised_max_pe``), or are no more reproducible across training runs than a randomised
    model's (``control:twin``'s PE less than ``min_above_randomised`` above it), or move as far under
    fine-tuning alone as under randomisation (``control:finetune``'s PE, averaged over its seeds,
    less than ``min_above_randomised`` above it), or when more than ``max_degenerate`` of the
    reference's own maps are degenerate (constant). A check whose control is missing is not made:
    ``not_checked`` says which. The twin's PE is a scale, not a pass mark: it is reported, never
    required. Variables: ``twin_pe``, ``control_pe``, ``randomised_pe``, ``energy_in_mask`` (the
    reference's mean share of map energy inside the object masks, when stored; NaN otherwise),
    ``degenerate_share`` (of the reference's maps), ``usable`` (no check failed), ``why`` (the failed
    checks), ``not_checked``.
    """
    groups = structure.seed_groups(ds)
    pe = structure.by_group(score(ds, variable, class_weights).compute(), ds)
    twin = _group_score(pe, structure.control(ds, schema.CONTROL_TWIN))
    control = _group_score(pe, structure.control(ds, schema.CONTROL_FINETUNE))
    randomised = xr.concat([_group_score(pe.sel({schema.LAYER: [layer]}), structure.randomised(ds, layer))
                            for layer in pe[schema.LAYER].values], dim=schema.LAYER).transpose(*twin.dims)
    reference = structure.reference(ds)
    energy = (ds[schema.ENERGY_IN_MASK].sel({schema.MODEL: reference}).mean(schema.IMAGE).compute()
              if schema.ENERGY_IN_MASK in ds else xr.full_like(twin, np.nan))
    energy = energy.drop_vars([name for name in energy.coords if name not in (schema.LAYER, schema.CAM)])
    degenerate = (ds[schema.DEGENERATE].sel({schema.MODEL: reference}, drop=True).mean(schema.IMAGE).compute()
                  .astype(float) if schema.DEGENERATE in ds else xr.zeros_like(twin))
    degenerate = degenerate.drop_vars([name for name in degenerate.coords if name not in (schema.LAYER, schema.CAM)])
    checks = [(degenerate > max_degenerate + TOLERANCE,
               f"more than {max_degenerate:.0%} of the reference's maps are degenerate (constant): no signal to compare"),
              (randomised > randomised_max_pe + TOLERANCE,
               f"randomised copy's PE above {randomised_max_pe:g}: the maps ignore the weights"),
              (twin - randomised < min_above_randomised - TOLERANCE,
               f"twin PE less than {min_above_randomised:g} above the randomised copy's: maps no more reproducible "
               "across training runs than a random model's"),
              (control - randomised < min_above_randomised - TOLERANCE,
               f"{schema.CONTROL_FINETUNE} PE less than {min_above_randomised:g} above the randomised copy's: "
               "fine-tuning alone moves the maps as far as randomisation")]
    randomised_names = xr.DataArray([schema.RANDOMISED_PREFIX + str(layer) for layer in twin[schema.LAYER].values],
                                    dims=schema.LAYER, coords={schema.LAYER: twin[schema.LAYER]})
    missing: list[tuple[xr.DataArray, str | xr.DataArray]] = [
        (randomised.isnull(), randomised_names), (twin.isnull(), schema.CONTROL_TWIN),
               (control.isnull(), schema.CONTROL_FINETUNE)]
    why, not_checked = _joined(checks, twin, "; "), _joined(missing, twin, ", ")
    return xr.Dataset({"twin_pe": twin, "control_pe": control, "randomised_pe": randomised,
                       "energy_in_mask": energy, "degenerate_share": degenerate.transpose(*twin.dims), "usable": why == "", "why": why, "not_checked": not_checked},
                      attrs={"randomised_max_pe": randomised_max_pe, "min_above_randomised": min_above_randomised,
                             "max_degenerate": max_degenerate})


def _joined(parts: Sequence[tuple[xr.DataArray, str | xr.DataArray]], template: xr.DataArray,
            separator: str) -> xr.DataArray:
    """For each cell of ``template (layer, cam)``: the texts of ``parts`` (one text, or one per cell) whose
    condition holds there, joined."""
    conditions = [(condition.transpose(*template.dims).values,
                   text.broadcast_like(template).transpose(*template.dims).values
                   if isinstance(text, xr.DataArray) else np.full(template.shape, text, dtype=object))
                  for condition, text in parts]
    values = np.empty(template.shape, dtype=object)
    for index in np.ndindex(template.shape):
        values[index] = separator.join(str(text[index]) for condition, text in conditions if condition[index])
    return template.copy(data=values.astype(str))


def _group_score(pe: xr.DataArray, group: str | None) -> xr.DataArray:
    """``pe`` of ``group`` ``(layer, cam)`` without model coordinates; NaN when ``group`` is None."""
    template = pe.isel({schema.MODEL: 0}, drop=True)
    template = template.drop_vars([name for name in template.coords if name not in (schema.LAYER, schema.CAM)])
    if group is None:
        return xr.full_like(template, np.nan, dtype=float)
    return template.copy(data=pe.sel({schema.MODEL: group}).values.astype(float))


def _class_floors(class_pe: xr.DataArray, verdicts: xr.Dataset) -> xr.DataArray:
    """The PE below which a class counts as failing ``(layer, cam, label)``; ``class_pe (model, layer, cam,
    label)`` by group."""
    control = verdicts.attrs["control"]
    if control:
        floor = class_pe.sel({schema.MODEL: control}, drop=True) - verdicts.attrs["margin"]
        return floor.drop_vars([name for name in floor.coords if name not in (schema.LAYER, schema.CAM, schema.LABEL)])
    return xr.full_like(verdicts["control_pe"], verdicts.attrs["pe_threshold"])


def _passing_prefix(passing: np.ndarray) -> int:
    """How many of ``passing (R,)`` pass before the first failure."""
    return len(passing) if passing.all() else int(np.argmin(passing))


def _what_failed(verdict: xr.Dataset) -> str:
    if str(verdict["verdict"].item()) == NOT_ASSESSABLE:
        return NOT_ASSESSABLE
    failed = [name for name, key in (("pe", "pe_ok"), ("accuracy", "accuracy_ok")) if not bool(verdict[key])]
    return "+".join(failed)


def _classes_below(class_pe: xr.DataArray, floor: xr.DataArray) -> list[str]:
    """Names of the classes ``(label,)`` whose PE is below their floor, lowest PE first."""
    below = (class_pe < floor - TOLERANCE).values
    order = np.argsort(class_pe.values, kind="stable")
    return [str(name) for name in class_pe[schema.CLASS_NAME].values[order][below[order]]]
