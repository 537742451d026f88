"""Time pescore_nb.stats on 10,000 images x 1,000 resamples against a naive per-resample loop.

Run: ``PYTHONPATH=. python benchmarks/stats.py``. Everything runs on one synthetic PE variable
(5 models, 10 classes) in the same process, against two naive per-resample loops:
- numpy: each resample draws its images with ``rng.choice`` class by class and averages them;
- xarray: each resample is ``scores.score(ds.isel(image=drawn))``, what one writes with the library
  (timed on 100 resamples and scaled to 1,000, else it takes minutes).
"""
from __future__ import annotations

import time

import numpy as np
import xarray as xr

from pescore_nb import schema, stats
from pescore_nb.metrics import PEConfig
from pescore_nb.scores import score
from pescore_nb.structure import weights_by_class

N_IMAGES, N_RESAMPLES, N_MODELS, N_CLASSES = 10_000, 1_000, 5, 10


def synthetic_scores(seed: int = 0) -> xr.Dataset:
    """PE ``(model, layer, method, image)`` drawn from Beta distributions, 10 unbalanced classes."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(N_CLASSES, size=N_IMAGES, p=np.arange(1, N_CLASSES + 1) / (N_CLASSES * (N_CLASSES + 1) / 2))
    pe = rng.beta(8, 2, size=(N_MODELS, 1, 1, N_IMAGES))
    return xr.Dataset({schema.PE: (schema.SCORE_DIMS, pe)},
                      coords={schema.MODEL: [f"m{i}" for i in range(N_MODELS)], schema.LAYER: ["l"],
                              schema.CAM: ["gradcam"], schema.LABEL: (schema.IMAGE, labels)},
                      attrs={"pe_config": PEConfig().to_json()})


def naive_bootstrap(ds: xr.Dataset, seed: int = 0) -> np.ndarray:
    """The per-resample loop: ``(N_RESAMPLES, model)`` resampled class-weighted PE."""
    rng = np.random.default_rng(seed)
    values = ds[schema.PE].values.reshape(N_MODELS, N_IMAGES)
    labels = ds[schema.LABEL].values
    weights = weights_by_class(labels).values
    members = [np.flatnonzero(labels == k) for k in np.unique(labels)]
    resampled = np.empty((N_RESAMPLES, N_MODELS))
    for b in range(N_RESAMPLES):
        class_means = [values[:, rng.choice(index, size=len(index))].mean(axis=1) for index in members]
        resampled[b] = np.asarray(class_means).T @ weights
    return resampled


def xarray_loop(ds: xr.Dataset, n_resamples: int, seed: int = 0) -> np.ndarray:
    """The per-resample loop through the library: ``(n_resamples, model)`` resampled scores."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(ds[schema.LABEL].values == k) for k in np.unique(ds[schema.LABEL].values)]
    return np.stack([score(ds.isel(image=np.concatenate([rng.choice(index, size=len(index)) for index in members])))
                     .values.ravel() for _ in range(n_resamples)])


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    ds = synthetic_scores()
    naive_s, naive = timed(naive_bootstrap, ds)
    xarray_s = timed(xarray_loop, ds, N_RESAMPLES // 10)[0] * 10
    bootstrap_s, interval = timed(stats.bootstrap, ds, n_resamples=N_RESAMPLES)
    per_class_s, _ = timed(stats.bootstrap, ds, per_class=True, n_resamples=N_RESAMPLES)
    compare_s, _ = timed(stats.compare, ds, "m0", "m1", n_resamples=N_RESAMPLES)
    naive_low = np.quantile(naive, 0.025, axis=0)
    print(f"{N_IMAGES} images x {N_RESAMPLES} resamples, {N_MODELS} models, {N_CLASSES} classes")
    print(f"naive loop, xarray (scaled from 100): {xarray_s:7.3f} s")
    print(f"naive loop, numpy                   : {naive_s:7.3f} s")
    print(f"stats.bootstrap                     : {bootstrap_s:7.3f} s  "
          f"({xarray_s / bootstrap_s:.0f}x faster than the xarray loop, {naive_s / bootstrap_s:.1f}x than numpy)")
    print(f"stats.bootstrap(per_class=True)     : {per_class_s:7.3f} s")
    print(f"stats.compare (interval + p-value)  : {compare_s:7.3f} s")
    print(f"2.5% quantile, vectorised vs naive (model 0): "
          f"{float(interval['low'][0, 0, 0]):.5f} vs {naive_low[0]:.5f}")


if __name__ == "__main__":
    main()
