"""The one reader of a results Dataset's structure: which model is the reference, which are the
controls, which pruners exist and their models by ratio, the class weights, and the default
thresholds of the trust rule. Every view (scores, stats, recommend, plot, explorer, CLI) asks here.

The reference is the model whose ``role`` coordinate is ``"reference"``, wherever it stands in
the ``model`` dimension; controls (``role == "control"``) never enter a pruner's ratio walk.

Models made with several fine-tuning seeds are named ``<name>/seed<s>`` (``"l2@0.10/seed0"``,
``"control:finetune/seed0"``) and carry their seed in the ``seed`` coordinate. A *group* is a name
without that suffix and the models that share it (:func:`seed_groups`); a model without a suffix is
a group of one. Verdicts, walks and views speak of groups: with one seed, a group is its model.
"""
from __future__ import annotations

import re
import warnings

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
    """The ``role`` of each model ``(model,)``, each one of ``reference``, ``candidate``, ``control``.

    A Dataset without roles is read only as an older schema (before version 2, which had none): its
    first model is the reference and the others candidates, said once with a
    :class:`~pescore_nb.schema.SchemaUpgradeWarning`.
    """
    if schema.ROLE in ds.coords:
        found = np.asarray(ds[schema.ROLE].values).astype(str)
        unknown = {str(name): str(role) for name, role in zip(ds[schema.MODEL].values.tolist(), found)
                   if role not in schema.ROLES}
        if unknown:
            raise ValueError(f"Unknown roles {unknown}: every model's role must be one of {list(schema.ROLES)}; "
                             "fix the 'role' coordinate (controls are 'control', pruned models 'candidate').")
        return found
    version = ds.attrs.get(schema.SCHEMA_VERSION_ATTRIBUTE)
    if version is not None and int(version) >= 2:
        raise ValueError(f"The Dataset has no '{schema.ROLE}' coordinate, which its schema (version {version}) "
                         "requires, so its reference is unknown; give it back, e.g. "
                         "ds.assign_coords(role=('model', ['reference', 'candidate', ...])).")
    first = str(ds[schema.MODEL].values[0])
    warnings.warn(f"This Dataset has an older pescore_nb schema without roles: its first model, {first!r}, is "
                  "read as the reference and the others as candidates. Load it with pescore_nb.load, or add a "
                  "'role' coordinate, to say otherwise.", schema.SchemaUpgradeWarning, stacklevel=3)
    fallback = np.full(ds.sizes[schema.MODEL], schema.CANDIDATE, dtype=object)
    fallback[0] = schema.REFERENCE
    return fallback.astype(str)


def accuracies(ds: xr.Dataset) -> xr.DataArray:
    """Each model's ``accuracy`` ``(model,)`` as float, checked: a NaN names its model."""
    accuracy = ds[schema.ACCURACY].astype(float)
    missing = ds[schema.MODEL].values[np.isnan(accuracy.values)].tolist()
    if missing:
        raise ValueError(f"The accuracy of {missing} is NaN, so no accuracy budget can be checked; recompute it, "
                         "e.g. (ds.pred == ds.label).mean('image'), and assign it as the 'accuracy' coordinate.")
    return accuracy


def check_same_images(ds: xr.Dataset) -> None:
    """Every model must have been evaluated on the reference's images (``images_digest``), or no
    per-image pairing means anything; a Dataset without digests (older schema) passes."""
    if schema.IMAGES_DIGEST not in ds.coords:
        return
    digests = dict(zip(ds[schema.MODEL].values.tolist(), ds[schema.IMAGES_DIGEST].values.astype(str).tolist()))
    expected = digests[reference(ds)]
    other = [name for name, digest in digests.items() if digest != expected]
    if other:
        raise ValueError(f"{other} were evaluated on other images than the reference (their images_digest "
                         "differs), so their scores cannot be paired image by image with the others; evaluate "
                         "every model in one pescore_nb.evaluate call on the same data.")


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
    """``name`` when the Dataset holds that control (one model, or a group of seeds), else None."""
    return name if name in {group_name(model) for model in controls(ds)} else None


def randomised(ds: xr.Dataset, layer: str) -> str | None:
    """The randomisation control of ``layer`` (``control:randomised@<layer>``) when the Dataset holds it."""
    return control(ds, schema.RANDOMISED_PREFIX + str(layer))


def seeds(ds: xr.Dataset) -> np.ndarray:
    """The fine-tuning ``seed`` of each model ``(model,)``, int; -1 where a model has none (or no coordinate)."""
    if schema.SEED in ds.coords:
        return np.asarray(ds[schema.SEED].values).astype(int)
    return np.full(ds.sizes[schema.MODEL], schema.NO_SEED, dtype=int)


_SEED_SUFFIX = re.compile(re.escape(schema.SEED_SEPARATOR) + r"\d+$")


def group_name(model: str) -> str:
    """``model`` without its ``/seed<s>`` suffix: ``"l2@0.10/seed3"`` -> ``"l2@0.10"``."""
    return _SEED_SUFFIX.sub("", str(model))


def seed_groups(ds: xr.Dataset) -> dict[str, list[str]]:
    """Each group name (a model name without ``/seed<s>``) -> its models, by increasing seed.

    The members of a group must share role, pruner and ratio, and have distinct seeds.
    """
    members: dict[str, list[int]] = {}
    for i, name in enumerate(ds[schema.MODEL].values.tolist()):
        members.setdefault(group_name(name), []).append(i)
    found_roles, found_seeds = roles(ds), seeds(ds)
    pruner = ds[schema.PRUNER].values.astype(str) if schema.PRUNER in ds.coords else found_roles
    ratio = ds[schema.RATIO].values.astype(float) if schema.RATIO in ds.coords else np.zeros(len(found_roles))
    groups = {}
    names = ds[schema.MODEL].values.astype(str)
    for group, indices in members.items():
        shared = {(found_roles[i], pruner[i], "nan" if np.isnan(ratio[i]) else ratio[i]) for i in indices}
        if len(shared) > 1:
            raise ValueError(f"The models {names[indices].tolist()} differ only by seed in their names but have "
                             f"other roles, pruners or ratios ({sorted(shared)}); rename them so that each "
                             "'<name>/seed<s>' group holds one candidate made with several seeds.")
        if len(set(found_seeds[indices].tolist())) < len(indices):
            raise ValueError(f"The models {names[indices].tolist()} share one seed "
                             f"({found_seeds[indices].tolist()}); give each member of a group its own seed.")
        groups[group] = names[sorted(indices, key=lambda i: found_seeds[i])].tolist()
    return groups


def one_seed(ds: xr.Dataset, seed: int) -> xr.Dataset:
    """``ds`` with only the models of ``seed`` among the groups that have several seeds: what one
    fine-tuning seed alone would have given (models without seed, and groups of one, are kept)."""
    groups = seed_groups(ds)
    model_seeds = dict(zip(ds[schema.MODEL].values.astype(str).tolist(), seeds(ds).tolist()))
    if seed not in model_seeds.values() or seed == schema.NO_SEED:
        raise ValueError(f"No group of models has seed {seed}; the seeds are {all_seeds(ds)}.")
    kept = [m for members in groups.values() for m in members if len(members) == 1 or model_seeds[m] == seed]
    return ds.sel({schema.MODEL: [m for m in ds[schema.MODEL].values.astype(str) if m in kept]})


def by_group(values: xr.DataArray, ds: xr.Dataset, how: str = "mean") -> xr.DataArray:
    """``values (model, ...)`` reduced over each group's models (``how``: ``"mean"``, ``"min"`` or ``"max"``):
    ``(model, ...)`` with the group names of :func:`seed_groups`, and each group's ``role``, ``pruner`` and
    ``ratio``."""
    groups = seed_groups(ds)
    reduced = xr.concat([getattr(values.sel({schema.MODEL: members}), how)(schema.MODEL)
                         for members in groups.values()], dim=schema.MODEL)
    firsts = values[schema.MODEL].sel({schema.MODEL: [members[0] for members in groups.values()]})
    kept = {name: (schema.MODEL, firsts[name].values) for name in (schema.ROLE, schema.PRUNER, schema.RATIO)
            if name in firsts.coords}
    reduced = reduced.drop_vars([name for name in reduced.coords if schema.MODEL in reduced[name].dims
                                 or name in values[schema.MODEL].coords], errors="ignore")
    return reduced.assign_coords({schema.MODEL: list(groups), **kept})


def all_seeds(ds: xr.Dataset) -> list[int]:
    """The distinct fine-tuning seeds of the models, increasing (``-1``, no seed, left out)."""
    return sorted({int(seed) for seed in seeds(ds) if seed != schema.NO_SEED})


def pruners(ds: xr.Dataset) -> list[str]:
    """The pruners of the candidates, in Dataset order (``none`` and controls excluded)."""
    candidates = models_with_role(ds, schema.CANDIDATE)
    return [str(p) for p in dict.fromkeys(ds[schema.PRUNER].sel({schema.MODEL: candidates}).values.tolist())
            if p != schema.UNPRUNED]


def by_ratio(ds: xr.Dataset, pruner: str) -> list[str]:
    """Names of ``pruner``'s candidate groups (:func:`seed_groups`) by increasing ratio; ratios must be
    known and distinct."""
    names = ds[schema.MODEL].values.astype(str).tolist()
    first = {group: names.index(members[0]) for group, members in seed_groups(ds).items()}
    groups = [group for group, i in first.items()
              if roles(ds)[i] == schema.CANDIDATE and str(ds[schema.PRUNER].values[i]) == pruner]
    if not groups:
        raise ValueError(f"No candidate was pruned by {pruner!r}; the pruners are {pruners(ds)}.")
    ratios = np.array([float(ds[schema.RATIO].values[first[group]]) for group in groups])
    if np.isnan(ratios).any():
        raise ValueError(f"Pruner {pruner!r} has models without a ratio ({np.array(groups)[np.isnan(ratios)].tolist()}); "
                         "give each candidate its ratio (pescore_nb.prune.sweep records it).")
    if len(np.unique(ratios)) < len(ratios):
        raise ValueError(f"Pruner {pruner!r} has two models at one ratio ({dict(zip(groups, ratios))}); "
                         "give them different pruner names so each pruner has one model per ratio "
                         "(several fine-tuning seeds of one model are named '<name>/seed<s>').")
    return [groups[i] for i in np.argsort(ratios)]


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
    accuracy = accuracies(ds)
    return float(accuracy.sel({schema.MODEL: reference(ds)})) - accuracy
