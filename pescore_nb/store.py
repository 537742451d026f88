"""Results on disk: `save` and `load` a pescore_nb Dataset as netCDF (``.nc``) or Zarr (``.zarr``)."""
from __future__ import annotations

from pathlib import Path

import xarray as xr

NETCDF_ENGINE = "h5netcdf"


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
        ds = xr.open_zarr(path, chunks=chunks)
    else:
        ds = xr.open_dataset(path, engine=NETCDF_ENGINE, chunks=chunks)
    return ds if lazy else ds.load()


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr"
