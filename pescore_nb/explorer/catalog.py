"""What the explorer reads from a results Dataset.

The small arrays (scores, probabilities, predictions, coordinates) are loaded once; per-class
summaries are computed once; heatmaps and pictures are sliced per image, lazily, and cached, so a
Dataset opened from disk with dask is read one image at a time and no dask graph is rebuilt per
interaction.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import xarray as xr

from .. import schema
from ..metrics import PEConfig
from ..scores import DegenerateMapWarning, by_class, score

SMALL_VARIABLES = (schema.SSIM, schema.IOU, schema.CONF, schema.PE, schema.DEGENERATE,
                   schema.PROB, schema.PRED)
CORRECT = "correct"


class Catalog:
    """The explorer's read-only view of a results Dataset ``ds`` (see ``schema``).

    Models are addressed by position: ``0`` is the reference, ``model_at(pruner, ratio)`` a
    candidate. Layers, methods and images are addressed by position too.
    """

    def __init__(self, ds: xr.Dataset, cache_size: int = 64):
        _check_names(ds)
        self.ds = ds
        self.config = PEConfig.from_attrs(ds.attrs)
        self.small = ds[list(SMALL_VARIABLES)].compute()
        self.layers = [str(name) for name in self.small[schema.LAYER].values]
        self.methods = [str(name) for name in self.small[schema.CAM].values]
        self.labels = self.small[schema.LABEL].values  # (image,)
        self.class_names = dict(zip(self.labels.tolist(), map(str, self.small[schema.CLASS_NAME].values)))
        self.classes = sorted(self.class_names)
        self._models, self.ratios = _index_models(self.small)
        self.pruners = list(self.ratios)
        with warnings.catch_warnings():  # the explorer flags degenerate maps per image instead
            warnings.simplefilter("ignore", DegenerateMapWarning)
            self.pe_by_class = by_class(self.small).sel({schema.LABEL: self.classes}).values
            self.pe_overall = score(self.small).values
            correct = self.small.assign({CORRECT: self.small[schema.PRED] == self.small[schema.LABEL]})
            self.accuracy_by_class = by_class(correct, CORRECT).sel({schema.LABEL: self.classes}).values
        self.accuracy = self.small[schema.ACCURACY].values.astype(float)  # (model,)
        self.heatmaps = functools.lru_cache(maxsize=cache_size)(self._heatmaps)
        self.picture = functools.lru_cache(maxsize=cache_size)(self._picture)

    def model_at(self, pruner: str, ratio: float) -> int | None:
        """The position of the candidate made by ``pruner`` at ``ratio``; None if there is none."""
        return self._models.get((pruner, float(ratio)))

    def name(self, model: int) -> str:
        return str(self.small[schema.MODEL].values[model])

    def curve(self, pruner: str, layer: int, method: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                    np.ndarray, np.ndarray]:
        """PE vs ratio for ``pruner``, the reference first at ratio 0.

        Returns ``ratios (R,)``, ``pe_by_class (R, K)``, ``accuracy_by_class (R, K)``,
        ``pe (R,)`` (class-weighted) and ``accuracy (R,)``.
        """
        ratios = (0.0,) + self.ratios[pruner]
        models = [0] + [self.model_at(pruner, ratio) for ratio in self.ratios[pruner]]
        return (np.array(ratios), self.pe_by_class[models, layer, method], self.accuracy_by_class[models],
                self.pe_overall[models, layer, method], self.accuracy[models])

    def worst_first(self, model: int, layer: int, method: int, label=None) -> np.ndarray:
        """Image positions ``(n,)`` ordered by the candidate's PE, lowest first; only ``label``'s if given."""
        pe = self.small[schema.PE].values[model, layer, method]
        images = np.arange(len(pe)) if label is None else np.flatnonzero(self.labels == label)
        return images[np.argsort(pe[images], kind="stable")]

    def readout(self, model: int, layer: int, method: int, image: int) -> dict:
        """The numbers of one image for one candidate: SSIM, IoU, Conf, PE, probabilities, predictions."""
        values = {name: float(self.small[name].values[model, layer, method, image])
                  for name in (schema.SSIM, schema.IOU, schema.CONF, schema.PE)}
        prob, pred = self.small[schema.PROB].values, self.small[schema.PRED].values
        values.update(degenerate=bool(self.small[schema.DEGENERATE].values[:, layer, method, image].any()),
                      ref_prob=float(prob[0, image]), cand_prob=float(prob[model, image]),
                      ref_pred=int(pred[0, image]), cand_pred=int(pred[model, image]),
                      label=int(self.labels[image]))
        return values

    def _heatmaps(self, layer: int, method: int, image: int) -> np.ndarray:
        """Every model's map of one image ``(model, y, x)`` float32 in [0, 1] (one read per image)."""
        maps = self.ds[schema.HEATMAP].isel({schema.LAYER: layer, schema.CAM: method, schema.IMAGE: image})
        return np.nan_to_num(np.asarray(maps.values, dtype=np.float32))

    def _picture(self, image: int) -> np.ndarray:
        """The input picture ``(y, x, 3)`` uint8 (grey pictures repeated to three channels)."""
        picture = np.asarray(self.ds[schema.INPUT].isel({schema.IMAGE: image}).values).transpose(1, 2, 0)
        return np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture[..., :3]


def _check_names(ds: xr.Dataset) -> None:
    needed = SMALL_VARIABLES + (schema.HEATMAP, schema.INPUT, schema.RATIO, schema.PRUNER,
                                schema.ACCURACY, schema.LABEL, schema.CLASS_NAME)
    missing = [name for name in needed if name not in ds.variables]
    if missing:
        raise ValueError(f"The Dataset lacks {missing}, which the explorer reads. Pass the Dataset made by "
                         "pescore_nb.evaluate (or opened from its file) with the names of pescore_nb.schema.")


def _index_models(small: xr.Dataset) -> tuple[dict, dict]:
    """``{(pruner, ratio): model position}`` of the candidates and ``{pruner: sorted ratios}``."""
    pruners = [str(p) for p in small[schema.PRUNER].values]
    ratios = [float(r) for r in small[schema.RATIO].values]
    names = [str(n) for n in small[schema.MODEL].values]
    models = {}
    for position in range(1, len(names)):
        key = (pruners[position], ratios[position])
        if key in models:
            raise ValueError(f"Models {names[models[key]]!r} and {names[position]!r} were both pruned by "
                             f"{key[0]!r} at ratio {key[1]}; the explorer shows one model per pruner and "
                             "ratio. Select one with ds.isel(model=[...]) or ds.drop_sel(model=[...]).")
        models[key] = position
    if not models:
        raise ValueError("The Dataset holds only the reference model; evaluate at least one pruned candidate.")
    by_pruner = {}
    for pruner, ratio in models:
        by_pruner.setdefault(pruner, []).append(ratio)
    return models, {pruner: tuple(sorted(values)) for pruner, values in by_pruner.items()}
