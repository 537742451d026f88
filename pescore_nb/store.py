"""Results on disk: `save` and `load` a Dataset (netCDF ``.nc`` or Zarr ``.zarr``), and `ZarrRun`,
the store that `evaluate(store=...)` fills batch by batch and resumes."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from . import schema

NETCDF_ENGINE = "h5netcdf"
DONE = "batch_done"  # (image,) bool in a run's store: the image's batch is fully written
RUN_ARGUMENTS = "run_arguments"  # attrs key: JSON of the arguments the store was written with


def save(ds: xr.Dataset, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``path`` (``.zarr`` -> Zarr, anything else -> netCDF4 via h5netcdf).

    An existing path is never replaced unless ``overwrite=True``. Returns the path written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pescore_nb never overwrites results silently. "
                              "Choose another path, or pass overwrite=True to replace it.")
    if _is_zarr(path):
        ds.to_zarr(path, mode="w" if overwrite else "w-", zarr_format=2, consolidated=True)
    else:
        ds.to_netcdf(path, engine=NETCDF_ENGINE)
    return path


def load(path: str | Path, *, lazy: bool = True) -> xr.Dataset:
    """Open a saved Dataset; ``lazy=True`` keeps the arrays on disk as dask arrays until used."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No results at {path}; write them with pescore_nb.save(ds, path) first.")
    chunks = {} if lazy else None
    if _is_zarr(path):
        ds = xr.open_zarr(path, chunks=chunks, zarr_format=2)
    else:
        ds = xr.open_dataset(path, engine=NETCDF_ENGINE, chunks=chunks)
    ds = ds.drop_vars(DONE, errors="ignore")
    return ds if lazy else ds.load()


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr"


class ZarrRun:
    """A Zarr store that one evaluation fills batch by batch, chunked along ``image``.

    Every batch writes its region, then marks it done, so a run killed at any moment is resumed
    by recomputing only the batches not marked. The store records the arguments it was made with
    and refuses a run with other ones.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def open_or_create(cls, path: str | Path, arguments: dict[str, str],
                       make_template: Callable[[], xr.Dataset]) -> "ZarrRun":
        """Open the run at ``path`` if it was made with ``arguments``, else create it from the template."""
        path = Path(path)
        if not _is_zarr(path):
            raise ValueError(f"store must be a '.zarr' path, got {path}; e.g. store='results.zarr'.")
        if path.exists():
            cls._check_arguments(path, arguments)
        else:
            template = make_template()
            batch_chunks = template.chunks[schema.IMAGE]
            template[DONE] = (schema.IMAGE, _zeros(template.sizes[schema.IMAGE], batch_chunks))
            template.attrs[RUN_ARGUMENTS] = json.dumps(arguments, sort_keys=True)
            partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
            template.to_zarr(partial, compute=False, mode="w", zarr_format=2, consolidated=True)
            os.rename(partial, path)  # atomic: a store either exists whole or not at all
        return cls(path)

    @staticmethod
    def _check_arguments(path: Path, arguments: dict[str, str]) -> None:
        stored = xr.open_zarr(path, zarr_format=2).attrs.get(RUN_ARGUMENTS)
        if stored is None:
            raise FileExistsError(f"{path} exists and was not written by evaluate(store=...); pescore_nb "
                                  "never overwrites results. Choose another store path.")
        stored = json.loads(stored)
        differ = sorted(key for key in set(stored) | set(arguments) if stored.get(key) != arguments.get(key))
        if differ:
            raise ValueError(f"{path} was written by a run with other arguments ({', '.join(differ)} differ); "
                             "pescore_nb never mixes or overwrites runs. Use another store path, or delete "
                             f"{path} to start again.")

    def done(self) -> np.ndarray:
        """``(image,)`` bool: which images' batches are fully written."""
        return xr.open_zarr(self.path, zarr_format=2)[DONE].values

    def write(self, chunk: xr.Dataset, start: int) -> None:
        """Write one batch's ``chunk`` at image positions ``start ...``, then mark it done."""
        region = {schema.IMAGE: slice(start, start + chunk.sizes[schema.IMAGE])}
        chunk = chunk.drop_vars([schema.MODEL, schema.LAYER, schema.METHOD])
        chunk.to_zarr(self.path, region=region, mode="r+", zarr_format=2)
        marks = xr.Dataset({DONE: (schema.IMAGE, np.ones(chunk.sizes[schema.IMAGE], dtype=bool))})
        marks.to_zarr(self.path, region=region, mode="r+", zarr_format=2)

    def finish(self, accuracy: Callable[[xr.Dataset], xr.DataArray]) -> xr.Dataset:
        """Write the ``accuracy (model,)`` coordinate once every batch is done; the run, opened lazily."""
        ds = xr.open_zarr(self.path, zarr_format=2)
        missing = int((~ds[DONE]).sum())
        if missing:
            raise RuntimeError(f"{missing} images of {self.path} are not written yet; run evaluate again "
                               "with the same arguments to finish it.")
        values = accuracy(ds).values.astype(np.float64)
        xr.Dataset({schema.ACCURACY: (schema.MODEL, values)}).to_zarr(
            self.path, region={schema.MODEL: slice(None)}, mode="r+", zarr_format=2)
        return load(self.path)


def _zeros(count: int, chunks):
    import dask.array

    return dask.array.zeros(count, dtype=bool, chunks=chunks)
