"""What the explorer reads from a results Dataset.

:class:`Results` loads the small arrays (scores, probabilities, predictions, coordinates) of
every model once and slices heatmaps and pictures per image, lazily, with a cache, so a Dataset
opened from disk with dask is read one image at a time and no dask graph is rebuilt per
interaction. A :class:`Catalog` is one seed choice's view of them: models are *groups*
(:func:`pescore_nb.structure.seed_groups`), scored as the mean over their fine-tuning seeds or as
one seed alone; its summaries and the trust rule's verdicts are computed once. Which model is the
reference, which are controls and which are a pruner's ratios is :mod:`pescore_nb.structure`'s
answer, never a position.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import xarray as xr

from .. import grouping, schema, structure, trust
from ..metrics import PEConfig
from ..scores import DegenerateMapWarning, by_class, score

SMALL_VARIABLES = (schema.SSIM, schema.IOU, schema.CONF, schema.PE, schema.DEGENERATE,
                   schema.PROB, schema.PRED)
VERDICT_FLAGS = ("trustworthy", "pe_ok", "accuracy_ok", "below_twin")
VERDICT_NUMBERS = ("pe", "pe_min", "pe_max", "accuracy_drop", "bound", "control_pe", "twin_pe")
VERDICT_TEXTS = ("verdict", "reason", "covers")


class Results:
    """A results Dataset ``ds`` as the explorer reads it, whatever seed it shows: ``small`` (the
    per-image scores, probabilities and predictions of every model, loaded), ``names`` (every model),
    ``seeds`` (the fine-tuning seeds when groups have several, else empty), ``heatmaps(layer, cam,
    image)`` ``(model, y, x)`` and ``picture(image)`` ``(y, x, 3)``, cached."""

    def __init__(self, ds: xr.Dataset, cache_size: int = 64):
        _check_names(ds)
        self.ds = ds
        self.config = PEConfig.from_attrs(ds.attrs)
        self.small = ds[list(SMALL_VARIABLES)].compute()
        self.names = [str(name) for name in self.small[schema.MODEL].values]
        self.seeds = structure.all_seeds(self.small) if grouping.several_seeds(self.small) else []
        self.heatmaps = functools.lru_cache(maxsize=cache_size)(self._heatmaps)
        self.picture = functools.lru_cache(maxsize=cache_size)(self._picture)

    def _heatmaps(self, layer: int, cam: int, image: int) -> np.ndarray:
        """Every model's map of one image ``(model, y, x)`` float32 in [0, 1] (one read per image)."""
        maps = self.ds[schema.HEATMAP].isel({schema.LAYER: layer, schema.CAM: cam, schema.IMAGE: image})
        return np.nan_to_num(np.asarray(maps.values, dtype=np.float32))

    def _picture(self, image: int) -> np.ndarray:
        """The input picture ``(y, x, 3)`` uint8 (grey pictures repeated to three channels)."""
        picture = np.asarray(self.ds[schema.INPUT].isel({schema.IMAGE: image}).values).transpose(1, 2, 0)
        return np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture[..., :3]


class Catalog:
    """The explorer's read-only view of the results at one seed choice: ``seed=None`` scores each group
    as the mean over its fine-tuning seeds (:func:`pescore_nb.grouping.mean_over_seeds`), an int as
    that seed alone (:func:`pescore_nb.structure.one_seed`).

    Groups, layers, CAM methods and images are addressed by position; with one seed a group is its
    model. ``reference`` is the reference's position (by role); with ratios (``has_ratios``)
    ``model_at(pruner, ratio)`` finds a candidate, else ``pickable`` lists the candidates then the
    controls. ``pe_by_class``, ``pe_overall``, ``accuracy_by_class`` and ``accuracy`` score the
    groups; the maps (``heatmaps``), the image list and the ``readout`` are those of one member per
    group, ``member_names``: the model of ``shown_seed`` (``seed``, or the smallest seed), or the
    group's only model (``n_seeds``: the models of each group). ``verdicts`` is :func:`trust.assess`
    ``(model, layer, cam)`` of those groups and ``recommendation`` :func:`trust.recommend`, or None
    with the reason in ``trust_error``.
    ``results`` (a :class:`Results`) may be shared by the catalogs of every seed choice.
    """

    def __init__(self, ds: xr.Dataset | Results, seed: int | None = None, cache_size: int = 64, **rule):
        self.results = results = ds if isinstance(ds, Results) else Results(ds, cache_size)
        self.config, self.seed = results.config, seed
        scored = results.small if seed is None or not results.seeds else structure.one_seed(results.small, seed)
        view = grouping.seed_view(results.small, seed)
        self.names = [str(name) for name in view[schema.MODEL].values]
        self.shown_seed = grouping.shown_seed(results.small, seed)
        groups = structure.seed_groups(results.small)
        model_seeds = dict(zip(results.names, structure.seeds(results.small).tolist()))
        self.member_names = [next((m for m in groups[group] if model_seeds[m] == self.shown_seed), groups[group][0])
                             for group in self.names]
        self.members = [results.names.index(name) for name in self.member_names]
        self.n_seeds = [len(groups[group]) for group in self.names]
        self.small = small = results.small.isel({schema.MODEL: self.members})  # per image: each group's member
        self.reference = self.names.index(structure.reference(view))
        self.controls = [self.names.index(name) for name in structure.controls(view)]
        candidates = [self.names.index(name) for name in structure.models_with_role(view, schema.CANDIDATE)]
        if not candidates:
            raise ValueError("The Dataset holds no pruned candidate (only the reference and controls); "
                             "evaluate at least one pruned candidate.")
        self.layers = [str(name) for name in small[schema.LAYER].values]
        self.cams = [str(name) for name in small[schema.CAM].values]
        self.labels = small[schema.LABEL].values  # (image,)
        self.class_names = dict(zip(self.labels.tolist(), map(str, small[schema.CLASS_NAME].values)))
        self.classes = sorted(self.class_names)
        self.has_ratios = structure.has_ratios(view)
        self._models, self.ratios = _index_models(view, self.names) if self.has_ratios else ({}, {})
        self.pruners = list(self.ratios)
        self.pickable = candidates + self.controls
        with warnings.catch_warnings():  # the explorer flags degenerate maps per image instead
            warnings.simplefilter("ignore", DegenerateMapWarning)
            self.pe_by_class = by_class(view).sel({schema.LABEL: self.classes}).values
            self.pe_overall = score(view).values
            self.accuracy_by_class = by_class(view, grouping.CORRECT).sel({schema.LABEL: self.classes}).values
            self.verdicts, self.recommendation, self.trust_error = _trust(scored, self.has_ratios, rule)
            self.layer_checks = trust.layer_checks(scored)
        self.accuracy = view[schema.ACCURACY].values.astype(float)  # (model,)
        self.heatmaps = functools.lru_cache(maxsize=cache_size)(self._heatmaps)
        self.picture = results.picture

    def model_at(self, pruner: str, ratio: float) -> int | None:
        """The position of the candidate made by ``pruner`` at ``ratio``; None if there is none."""
        return self._models.get((pruner, float(ratio)))

    def name(self, model: int) -> str:
        return self.names[model]

    def member_seed(self, model: int) -> int | None:
        """The seed of the model whose maps and numbers stand for group ``model``; None for a group of one."""
        return self.shown_seed if self.n_seeds[model] > 1 else None

    def role(self, model: int) -> str:
        return str(self.small[schema.ROLE].values[model]) if schema.ROLE in self.small.coords else (
            schema.REFERENCE if model == self.reference else schema.CANDIDATE)

    def pruner(self, model: int) -> str:
        return str(self.small[schema.PRUNER].values[model])

    def curve(self, pruner: str, layer: int, cam: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                              np.ndarray, np.ndarray]:
        """PE vs ratio for ``pruner``, the reference first at ratio 0.

        Returns ``ratios (R,)``, ``pe_by_class (R, K)``, ``accuracy_by_class (R, K)``,
        ``pe (R,)`` (class-weighted) and ``accuracy (R,)``.
        """
        ratios = (0.0,) + self.ratios[pruner]
        models = [self.reference] + [self.model_at(pruner, ratio) for ratio in self.ratios[pruner]]
        return self.curve_of(models, layer, cam, np.array(ratios))  # type: ignore[arg-type]  # every ratio has a model

    def curve_of(self, models: list[int], layer: int, cam: int, x: np.ndarray) -> tuple:
        """The same five arrays as :meth:`curve` for ``models`` drawn at ``x``."""
        return (x, self.pe_by_class[models, layer, cam], self.accuracy_by_class[models],
                self.pe_overall[models, layer, cam], self.accuracy[models])

    def worst_first(self, model: int, layer: int, cam: int, label=None) -> np.ndarray:
        """Image positions ``(n,)`` ordered by the shown member's PE, lowest first; only ``label``'s if given."""
        pe = self.small[schema.PE].values[model, layer, cam]
        images = np.arange(len(pe)) if label is None else np.flatnonzero(self.labels == label)
        return images[np.argsort(pe[images], kind="stable")]

    def typical(self, model: int, layer: int, cam: int, label=None) -> int:
        """The image (of ``label``, or of all classes) whose PE is nearest their median: a view that
        shows what the model usually does, not its worst case."""
        order = self.worst_first(model, layer, cam, label)
        pe = self.small[schema.PE].values[model, layer, cam, order]
        return int(order[np.argmin(np.abs(pe - np.median(pe)), axis=0)])

    def readout(self, model: int, layer: int, cam: int, image: int) -> dict:
        """The numbers of one image for the shown member of a group: SSIM, IoU, Conf, PE, probabilities,
        predictions, and whether the pair shown (the reference's map and this member's) is ``degenerate``
        (either map constant), ``reference_degenerate`` (the reference's map is)."""
        values = {name: float(self.small[name].values[model, layer, cam, image])
                  for name in (schema.SSIM, schema.IOU, schema.CONF, schema.PE)}
        prob, pred, reference = self.small[schema.PROB].values, self.small[schema.PRED].values, self.reference
        degenerate = self.small[schema.DEGENERATE].values[:, layer, cam, image]  # (model,): each with the reference
        values.update(degenerate=bool(degenerate[model]), reference_degenerate=bool(degenerate[reference]),
                      ref_prob=float(prob[reference, image]), cand_prob=float(prob[model, image]),
                      ref_pred=int(pred[reference, image]), cand_pred=int(pred[model, image]),
                      label=int(self.labels[image]))
        return values

    def verdict(self, model: int, layer: int, cam: int) -> dict | None:
        """The trust rule's verdict on one group at one layer and CAM method (None without verdicts):
        :data:`VERDICT_FLAGS`, :data:`VERDICT_NUMBERS` and :data:`VERDICT_TEXTS` of :func:`trust.assess`,
        its ``role`` and ``n_seeds``, and the rule's ``rule`` (name), ``control``, ``rule_text``, ``margin``,
        ``pe_threshold``, ``max_accuracy_drop``."""
        if self.verdicts is None:
            return None
        at = self.verdicts.sel({schema.MODEL: self.names[model]}).isel({schema.LAYER: layer, schema.CAM: cam})
        found = {**{name: bool(at[name]) for name in VERDICT_FLAGS},
                 **{name: float(at[name]) for name in VERDICT_NUMBERS},
                 **{name: str(at[name].item()) for name in VERDICT_TEXTS}}
        attrs = self.verdicts.attrs
        found.update(role=str(at[schema.ROLE].values), n_seeds=int(at["n_seeds"]), rule=str(attrs.get("rule", "")),
                     control=str(attrs.get("control", "")),
                     rule_text=str(attrs.get("rule_text", attrs.get("rule", ""))),
                     **{name: float(attrs.get(name, np.nan))
                        for name in ("margin", "pe_threshold", "max_accuracy_drop")})
        return found

    def layer_flag(self, layer: int, cam: int) -> str:
        """Why the maps of this layer and CAM method cannot carry a verdict (:func:`trust.layer_checks`); "" when they can."""
        check = self.layer_checks.isel({schema.LAYER: layer, schema.CAM: cam})
        return "" if bool(check["usable"]) else str(check["why"].item())

    def trusted(self, pruner: str, layer: int, cam: int) -> dict | None:
        """The :func:`trust.recommend` row of ``pruner`` at one layer and CAM method, as a dict (None
        without a recommendation)."""
        if self.recommendation is None:
            return None
        table = self.recommendation
        rows = table[(table["pruner"] == pruner) & (table["layer"] == self.layers[layer])
                     & (table["cam"] == self.cams[cam])]
        return None if rows.empty else rows.iloc[0].to_dict()

    def _heatmaps(self, layer: int, cam: int, image: int) -> np.ndarray:
        """Each group's shown member's map of one image ``(model, y, x)`` float32 in [0, 1]."""
        return self.results.heatmaps(layer, cam, image)[self.members]


def _check_names(ds: xr.Dataset) -> None:
    needed = SMALL_VARIABLES + (schema.HEATMAP, schema.INPUT, schema.RATIO, schema.PRUNER,
                                schema.ACCURACY, schema.LABEL, schema.CLASS_NAME)
    missing = [name for name in needed if name not in ds.variables]
    if missing:
        raise ValueError(f"The Dataset lacks {missing}, which the explorer reads. Pass the Dataset made by "
                         "pescore_nb.evaluate (or opened from its file) with the names of pescore_nb.schema.")


def _index_models(view: xr.Dataset, names: list[str]) -> tuple[dict, dict]:
    """``{(pruner, ratio): group position}`` of the candidates and ``{pruner: sorted ratios}``
    (:func:`structure.by_ratio` refuses two groups at one ratio, naming them)."""
    models, by_pruner = {}, {}
    for pruner in structure.pruners(view):
        ordered = structure.by_ratio(view, pruner)
        ratios = [float(view[schema.RATIO].sel({schema.MODEL: name})) for name in ordered]
        models.update({(pruner, ratio): names.index(name) for ratio, name in zip(ratios, ordered)})
        by_pruner[pruner] = tuple(ratios)
    return models, by_pruner


def _trust(small: xr.Dataset, has_ratios: bool, rule: dict) -> tuple[xr.Dataset | None, pd.DataFrame | None, str]:
    """:func:`trust.assess` and :func:`trust.recommend` of ``small``; what failed, as text, instead of raising
    (the explorer still shows the maps when the rule cannot be applied)."""
    try:
        verdicts = trust.assess(small, **rule)
    except (ValueError, KeyError) as error:
        return None, None, f"no verdict: {error}"
    if not has_ratios:
        return verdicts, None, "no trusted ratio: the candidates have no pruning ratios"
    try:
        return verdicts, trust.recommend(small, **rule), ""
    except (ValueError, KeyError) as error:
        return verdicts, None, f"no trusted ratio: {error}"
