"""A schema-conform results Dataset built by hand, without any model, for tests of the views."""
from __future__ import annotations

import numpy as np
import xarray as xr

from pescore_nb import schema
from pescore_nb.metrics import PEConfig


def results_dataset(n_images: int = 30, size: int = 16, pruners=("l2", "random"), ratios=(0.3, 0.6),
                    layers=("features.3", "features.7"), cams=("gradcam++",), n_classes: int = 3,
                    seed: int = 0, distinct_maps: bool = False, controls: dict | None = None) -> xr.Dataset:
    """A Dataset with the names of :mod:`pescore_nb.schema`: PE falls as the ratio grows, faster for "random".

    Heatmaps ``(model, layer, cam, image, size, size)`` drift away from the reference's blob as
    the ratio grows; scores are random but ordered so tests can check directions. With
    ``distinct_maps`` the blob also moves up with the layer, the CAM method and the image, so every
    (layer, cam, image) has its own maps. ``controls``: ``{name: drift}`` adds control models
    (role ``control``, ratio 0, pruner ``none``) whose maps drift like a candidate's with that drift.
    """
    controls = controls or {}
    rng = np.random.default_rng(seed)
    names = [schema.REFERENCE] + [f"{p}@{r:.2f}" for p in pruners for r in ratios] + list(controls)
    model_ratio = [0.0] + [r for _ in pruners for r in ratios] + [0.0] * len(controls)
    model_pruner = [schema.UNPRUNED] + [p for p in pruners for _ in ratios] + [schema.UNPRUNED] * len(controls)
    roles = ([schema.REFERENCE] + [schema.CANDIDATE] * (len(pruners) * len(ratios))
             + [schema.CONTROL] * len(controls))
    drift = np.array([0.0] + [r * (2.0 if p == "random" else 1.0) for p in pruners for r in ratios]
                     + list(controls.values()))
    labels = np.arange(n_images) % n_classes
    shape = (len(names), len(layers), len(cams), n_images)
    noise = rng.uniform(0, 0.05, size=shape)
    pe_like = np.clip(1.0 - drift[:, None, None, None] * (0.5 + labels / n_classes) - noise, 0, 1)
    pe_like[0] = 1.0
    yy, xx = np.mgrid[0:size, 0:size] / size
    centre = 0.5 + drift[:, None, None, None, None, None] * 0.4
    centre_y = 0.5
    if distinct_maps:
        shift = (0.15 * np.arange(len(layers))[:, None, None] + 0.07 * np.arange(len(cams))[None, :, None]
                 + 0.01 * np.arange(n_images)[None, None, :])  # (layer, cam, image)
        centre_y = 0.5 - shift[None, ..., None, None]
    heatmap = np.exp(-((yy - centre_y) ** 2 + (xx - centre) ** 2) / 0.05) * np.ones(shape + (1, 1))
    prob = np.clip(0.9 - drift[:, None] * 0.3 + rng.uniform(0, 0.05, (len(names), n_images)), 0, 1)
    pred = np.where(rng.uniform(size=(len(names), n_images)) < 0.95 - drift[:, None] * 0.2,
                    labels[None, :], (labels[None, :] + 1) % n_classes)
    score_vars = {name: (schema.SCORE_DIMS, pe_like ** power)
                  for name, power in ((schema.SSIM, 0.5), (schema.IOU, 1.0), (schema.CONF, 0.25))}
    ds = xr.Dataset(
        {schema.HEATMAP: (schema.HEATMAP_DIMS, heatmap.astype(np.float32)),
         schema.PROB: (schema.OUTPUT_DIMS, prob.astype(np.float32)),
         schema.PRED: (schema.OUTPUT_DIMS, pred.astype(np.int64)),
         **score_vars,
         schema.PE: (schema.SCORE_DIMS, pe_like ** 1.75),
         schema.DEGENERATE: (schema.SCORE_DIMS, np.zeros(shape, dtype=bool)),
         schema.INPUT: (schema.INPUT_DIMS, rng.integers(0, 256, (n_images, 3, size, size), dtype=np.uint8))},
        coords={schema.MODEL: names, schema.LAYER: list(layers), schema.CAM: list(cams),
                schema.IMAGE: np.arange(n_images),
                schema.ROLE: (schema.MODEL, roles),
                schema.RATIO: (schema.MODEL, model_ratio), schema.PRUNER: (schema.MODEL, model_pruner),
                schema.SEED: (schema.MODEL, [schema.NO_SEED] * len(names)),
                schema.PARAMS: (schema.MODEL, [int(1e5 * (1 - r) ** 2) for r in model_ratio]),
                schema.MACS: (schema.MODEL, [int(1e7 * (1 - r) ** 2) for r in model_ratio]),
                schema.ACCURACY: (schema.MODEL, (pred == labels[None, :]).mean(axis=1)),
                schema.LABEL: (schema.IMAGE, labels),
                schema.CLASS_NAME: (schema.IMAGE, [f"class{k}" for k in labels]),
                schema.SOURCE_INDEX: (schema.IMAGE, np.arange(n_images) * 2)},
        attrs={schema.SCHEMA_VERSION_ATTRIBUTE: schema.SCHEMA_VERSION,
               "pe_config": PEConfig().to_json(), "reference_name": "SyntheticNet",
               "input_height": size, "input_width": size})
    return ds


def seeded_results_dataset(seeds=(0, 1, 2), **kwargs) -> xr.Dataset:
    """:func:`results_dataset` with ``control:finetune`` and ``control:twin``, its candidates and
    ``control:finetune`` made once per fine-tuning seed (``"l2@0.30/seed1"``, ``seed`` coordinate),
    each seed drawn with its own random scores; the reference and the twin appear once (seed -1).
    """
    parts = []
    for i, seed in enumerate(seeds):
        ds = results_dataset(seed=seed, controls={schema.CONTROL_FINETUNE: 0.05, schema.CONTROL_TWIN: 0.3}, **kwargs)
        names = ds[schema.MODEL].values.astype(str)
        seeded = (ds[schema.ROLE].values == schema.CANDIDATE) | (names == schema.CONTROL_FINETUNE)
        ds = ds.assign_coords({schema.MODEL: [schema.seeded_name(n, seed) if s else n for n, s in zip(names, seeded)],
                               schema.SEED: (schema.MODEL, np.where(seeded, seed, schema.NO_SEED))})
        parts.append(ds if i == 0 else ds.isel({schema.MODEL: np.flatnonzero(seeded)}))
    return xr.concat(parts, dim=schema.MODEL, data_vars="minimal", coords="minimal", compat="override")


def user_models_dataset(names=("mine-small", "mine-medium", "mine-large"), drifts=(0.05, 0.3, 0.6),
                        **kwargs) -> xr.Dataset:
    """:func:`results_dataset` as a user's own candidates look: named by the user, without pruner or
    ratio (pruner ``unknown``, ratio NaN), each drifting from the reference by its ``drifts``."""
    ds = results_dataset(pruners=("l2",), ratios=tuple(drifts), **kwargs)
    candidates = ds[schema.ROLE].values == schema.CANDIDATE
    models = ds[schema.MODEL].values.astype(object)
    models[candidates] = list(names)
    ratio, pruner = ds[schema.RATIO].values.copy(), ds[schema.PRUNER].values.astype(object)
    ratio[candidates], pruner[candidates] = np.nan, schema.UNKNOWN_PRUNER
    return ds.assign_coords({schema.MODEL: models.astype(str), schema.RATIO: (schema.MODEL, ratio),
                             schema.PRUNER: (schema.MODEL, pruner.astype(str))})
