"""Results on disk: `save` and `load` a Dataset (netCDF ``.nc`` or Zarr ``.zarr``), and `ZarrRun`,
the store that `evaluate(store=...)` fills batch by batch and resumes.

Nothing here loses or mixes results silently: `save` writes a temporary sibling and renames it
into place (a failure leaves the old file or nothing), so saving a lazily loaded Dataset over its
own source works; `overwrite=True` replaces only files and pescore_nb stores; `load` refuses an
unfinished run unless asked for its finished part, and upgrades files of older schema versions.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable, Final, Iterator

import numpy as np
import xarray as xr
from zarr.storage import LocalStore

from . import schema, structure
from .schema import SchemaUpgradeWarning
from .metrics import CONFIG_ATTRIBUTE

NETCDF_ENGINE: Final = "h5netcdf"
DONE = "batch_done"  # (image,) bool in a run's store: the image's batch is fully written
RUN_ARGUMENTS = "run_arguments"  # attrs key: JSON of the arguments the store was written with


def save(ds: xr.Dataset, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``ds`` to ``path`` (``.zarr`` -> Zarr, anything else -> netCDF4 via h5netcdf; suffixes in
    any case), atomically.

    The Dataset is written to a hidden temporary sibling first and renamed into place, so a
    failure (disk full, a kill) leaves the old file or nothing, and ``ds`` may be a lazily loaded
    view of ``path`` itself. A netCDF file is made in memory, with a Fletcher-32 checksum on every
    numeric variable (``load`` verifies them), then written by Python, so a full disk is one
    ``OSError`` and never takes the process (a Jupyter kernel) down. An existing path is never
    replaced unless ``overwrite=True``, and never when it is a folder that is not a pescore_nb
    store. Returns the path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Cannot save to {path}: the folder {path.parent} does not exist; create it first, "
                                "e.g. pathlib.Path(folder).mkdir(parents=True).")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pescore_nb never overwrites results silently. "
                              "Choose another path, or pass overwrite=True to replace it.")
    if path.is_dir() and not _is_pescore_store(path):
        raise FileExistsError(f"{path} is a folder that is not a pescore_nb store; overwrite=True replaces only "
                              "pescore_nb results. Choose another path, or move that folder away yourself.")
    temporary = path.with_name(f".{path.name}.saving-{os.getpid()}")
    _remove(temporary)
    try:
        if _is_zarr(path):
            ds.to_zarr(temporary, mode="w-", zarr_format=2, consolidated=True)
        else:
            temporary.write_bytes(_netcdf_bytes(ds))
        _replace(temporary, path)
    except OSError as error:
        raise OSError(error.errno, f"Could not write {path} ({error.strerror or error}); nothing was replaced. "
                      "Free some disk space (or choose another folder) and save again.") from None
    finally:
        _remove(temporary)
    return path


def _netcdf_bytes(ds: xr.Dataset) -> bytes:
    """``ds`` as the bytes of a netCDF4 file, every numeric variable with a Fletcher-32 checksum."""
    encoding = {name: {"fletcher32": True} for name, variable in ds.variables.items()
                if variable.dtype.kind in "fiub" and variable.ndim}
    return bytes(ds.to_netcdf(engine=NETCDF_ENGINE, encoding=encoding))


def load(path: str | Path, *, lazy: bool = True, partial: bool = False) -> xr.Dataset:
    """Open a saved Dataset; ``lazy=True`` keeps the arrays on disk as dask arrays until used.

    A store of an ``evaluate(store=...)`` run that has not finished is refused (resume it by
    calling ``evaluate`` again with the same arguments) unless ``partial=True``, which returns
    only its finished images, with the accuracy of those. Files of an older schema are renamed to
    today's names (``method`` -> ``cam``, ``index`` -> ``source_index``, a ``role`` coordinate with
    the first model as reference, a ``seed`` coordinate from each model's provenance) with one
    :class:`SchemaUpgradeWarning`. A lazy view of a Zarr store that is later replaced (saved over)
    raises :class:`StaleResultsError` on its next read instead of reading the new numbers (a netCDF
    file's view keeps reading the version it opened). A netCDF file's checksums are verified as it is opened (one read
    of the file: use Zarr for results too large for that); a corrupted file, a netCDF3 or foreign
    file, and a folder that is not a store are each refused with what pescore_nb expects.
    """
    path = Path(path)
    for name, value in (("lazy", lazy), ("partial", partial)):
        if not isinstance(value, bool):
            raise ValueError(f"load's {name} must be True or False, got {value!r}.")
    if not path.exists():
        raise FileNotFoundError(f"No results at {path}; write them with pescore_nb.save(ds, path) first.")
    chunks: dict | None = {} if lazy else None
    if _is_zarr(path):
        if not (path / ".zattrs").is_file():
            raise ValueError(f"{path} is not a Zarr store (no .zattrs in it); give the path of a store that "
                             "pescore_nb.save or evaluate(store=...) wrote.")
        ds = xr.open_zarr(PinnedStore(path), chunks=chunks, zarr_format=2)
    else:
        _check_netcdf(path)
        ds = xr.open_dataset(path, engine=NETCDF_ENGINE, chunks=chunks)
    if CONFIG_ATTRIBUTE not in ds.attrs:
        raise ValueError(f"{path} holds no pescore_nb results (no '{CONFIG_ATTRIBUTE}' attribute); open other "
                         "files with xarray.open_dataset, and load files written by pescore_nb.save here.")
    if DONE in ds:
        ds = _finished_part(ds, path, partial)
    ds = _upgraded(ds, path)
    return ds if lazy else ds.load()


class StaleResultsError(RuntimeError):
    """The store a lazily loaded Dataset reads was replaced (another save over it) after it was loaded."""


class PinnedStore(LocalStore):
    """A read-only Zarr folder that refuses every read once the folder at its path has been replaced, so a
    lazy view never returns another run's numbers under its own coordinates."""

    def __init__(self, root: str | Path):
        super().__init__(root, read_only=True)
        self.inode = os.stat(root).st_ino

    async def get(self, key, prototype, byte_range=None):
        try:
            current = os.stat(self.root).st_ino
        except FileNotFoundError:
            current = None
        if current != self.inode:
            raise StaleResultsError(f"{self.root} was replaced (or removed) after this Dataset was loaded from it, so "
                                    "its arrays would now read other results; load it again with pescore_nb.load.")
        return await super().get(key, prototype, byte_range)


def _finished_part(ds: xr.Dataset, path: Path, partial: bool) -> xr.Dataset:
    """The images of a run's store whose batches are written (all, or refuse unless ``partial``)."""
    done = ds[DONE].values
    ds = ds.drop_vars(DONE)
    if done.all():
        return ds
    batch_size = int(json.loads(ds.attrs.get(RUN_ARGUMENTS, "{}")).get("batch_size", 1))
    batches = -(-len(done) // batch_size)
    finished = int(done.reshape(-1)[::batch_size].sum())
    if not partial:
        raise RuntimeError(f"{path} is an unfinished evaluate(store=...) run: {finished} of {batches} batches "
                           f"({int(done.sum())} of {len(done)} images) are written. Resume it by calling "
                           f"evaluate again with the same models, data and arguments and store='{path}', or "
                           "load only the finished images with load(path, partial=True).")
    ds = ds.isel({schema.IMAGE: np.flatnonzero(done)})
    accuracy = (ds[schema.PRED] == ds[schema.LABEL]).mean(schema.IMAGE).values.astype(np.float64)
    return ds.assign_coords({schema.ACCURACY: (schema.MODEL, accuracy)})


def _upgraded(ds: xr.Dataset, path: Path) -> xr.Dataset:
    """``ds`` with the names of today's schema, saying once what was renamed or added."""
    if ds.attrs.get(schema.SCHEMA_VERSION_ATTRIBUTE) == schema.SCHEMA_VERSION:
        return ds
    renames = {old: new for old, new in schema.LEGACY_NAMES.items() if old in ds.variables or old in ds.dims}
    ds = ds.rename(renames)
    changes = [f"{old} -> {new}" for old, new in renames.items()]
    if schema.MODEL in ds.dims and schema.ROLE not in ds.coords:
        roles = [schema.REFERENCE] + [schema.CANDIDATE] * (ds.sizes[schema.MODEL] - 1)
        ds = ds.assign_coords({schema.ROLE: (schema.MODEL, roles)})
        changes.append(f"added '{schema.ROLE}' (the first model is the reference, the others candidates)")
    if schema.MODEL in ds.dims and schema.SEED not in ds.coords:
        ds = ds.assign_coords({schema.SEED: (schema.MODEL, _seeds_from_provenance(ds))})
        changes.append(f"added '{schema.SEED}' (each model's pruning_seed from its provenance, "
                       f"{schema.NO_SEED} where it has none)")
    ds.attrs[schema.SCHEMA_VERSION_ATTRIBUTE] = schema.SCHEMA_VERSION
    warnings.warn(f"{path} was written with an older pescore_nb schema; loaded with today's names: "
                  f"{'; '.join(changes) or 'no renames'}. Save it again to keep them.", SchemaUpgradeWarning,
                  stacklevel=3)
    return ds


def _seeds_from_provenance(ds: xr.Dataset) -> list[int]:
    """The seed of each model ``(model,)`` of a schema-2 file: ``pruning_seed`` in its provenance, else -1."""
    if schema.PROVENANCE not in ds.coords:
        return [schema.NO_SEED] * ds.sizes[schema.MODEL]
    seeds = []
    for role, provenance in zip(structure.roles(ds), ds[schema.PROVENANCE].values.tolist()):
        seed = json.loads(provenance or "{}").get("pruning_seed") if role != schema.REFERENCE else None
        seeds.append(int(seed) if isinstance(seed, int) else schema.NO_SEED)
    return seeds


def _check_netcdf(path: Path) -> None:
    """Refuse what cannot be pescore_nb's netCDF4 file, and a file whose checksums fail (one read of it)."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a results file; give a .nc file, or a .zarr store folder.")
    with open(path, "rb") as file:
        signature = file.read(8)
    if signature[:3] == b"CDF":
        raise ValueError(f"{path} is a netCDF3 (classic) file; pescore_nb reads the netCDF4 files it writes. Open it "
                         "with xarray.open_dataset, or convert it with ds.to_netcdf(engine='h5netcdf').")
    if signature != b"\x89HDF\r\n\x1a\n":
        raise ValueError(f"{path} is not a netCDF4 file (it does not start with the HDF5 signature); give a file "
                         "written by pescore_nb.save.")
    import h5py

    def verify(name, item):
        if isinstance(item, h5py.Dataset) and item.fletcher32:
            try:
                item[...]
            except OSError:
                raise ValueError(f"{path} is corrupted: the checksum of its variable {name!r} fails. Restore it "
                                 "from a copy, or compute the results again.") from None

    with h5py.File(path, "r") as file:
        file.visititems(verify)


def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr"


def _is_pescore_store(path: Path) -> bool:
    """True for a Zarr folder whose attrs carry a PE config (written by pescore_nb)."""
    attrs_file = path / ".zattrs"
    try:
        return CONFIG_ATTRIBUTE in json.loads(attrs_file.read_text())
    except (OSError, ValueError):
        return False


def _replace(source: Path, target: Path) -> None:
    """Move ``source`` onto ``target``; a folder target is swapped out first and removed only after."""
    if not target.is_dir():
        os.replace(source, target)  # atomic for files
        return
    retired = target.with_name(f".{target.name}.retired-{os.getpid()}")
    _remove(retired)
    os.rename(target, retired)
    try:
        os.rename(source, target)
    except BaseException:
        os.rename(retired, target)
        raise
    _remove(retired)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``'s hidden lock file: a second process waits here."""
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class ZarrRun:
    """A Zarr store that one evaluation fills batch by batch, chunked along ``image``.

    Every batch writes its region, then marks it done, so a run killed at any moment is resumed
    by recomputing only the batches not marked. The store records the arguments it was made with
    (digests of the data included) and refuses a run with other ones.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def open_or_create(cls, path: str | Path, arguments: dict[str, str],
                       make_template: Callable[[], xr.Dataset]) -> "ZarrRun":
        """Open the run at ``path`` if it was made with ``arguments``, else create it from the template.

        Creation holds a lock, so a second process starting the same store waits, then resumes it.
        """
        path = Path(path)
        if not _is_zarr(path):
            raise ValueError(f"store must be a '.zarr' path, got {path}; e.g. store='results.zarr'.")
        with _locked(path):
            if path.exists():
                cls._check_arguments(path, arguments)
                return cls(path)
            template = make_template()
            batch_chunks = template.chunks[schema.IMAGE]
            template[DONE] = (schema.IMAGE, _zeros(template.sizes[schema.IMAGE], batch_chunks))
            template.attrs[RUN_ARGUMENTS] = json.dumps(arguments, sort_keys=True)
            partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
            try:
                template.to_zarr(partial, compute=False, mode="w", zarr_format=2, consolidated=True)
                os.rename(partial, path)  # atomic: a store either exists whole or not at all
            finally:
                _remove(partial)
        return cls(path)

    @staticmethod
    def _check_arguments(path: Path, arguments: dict[str, str]) -> None:
        existing = xr.open_zarr(path, zarr_format=2)
        stored = existing.attrs.get(RUN_ARGUMENTS)
        if stored is None or DONE not in existing:
            raise FileExistsError(f"{path} exists and is not an evaluate(store=...) run that can be resumed (finished "
                                  "results saved by pescore_nb.save, or other data); pescore_nb never overwrites "
                                  "results. Choose another store path, or load it with pescore_nb.load.")
        stored = json.loads(stored)
        differ = sorted(key for key in set(stored) | set(arguments) if stored.get(key) != arguments.get(key))
        if differ:
            raise ValueError(f"{path} was written by a run with other arguments or data ({', '.join(differ)} "
                             "differ); pescore_nb never mixes or overwrites runs. Use another store path, or "
                             f"delete {path} to start again.")

    def done(self) -> np.ndarray:
        """``(image,)`` bool: which images' batches are fully written."""
        return xr.open_zarr(self.path, zarr_format=2)[DONE].values

    def write(self, chunk: xr.Dataset, start: int) -> None:
        """Write one batch's ``chunk`` at image positions ``start ...``, then mark it done."""
        region = {schema.IMAGE: slice(start, start + chunk.sizes[schema.IMAGE])}
        chunk = chunk.drop_vars([schema.MODEL, schema.LAYER, schema.CAM])
        marks = xr.Dataset({DONE: (schema.IMAGE, np.ones(chunk.sizes[schema.IMAGE], dtype=bool))})
        try:
            chunk.to_zarr(self.path, region=region, mode="r+", zarr_format=2)
            marks.to_zarr(self.path, region=region, mode="r+", zarr_format=2)
        except OSError as error:
            raise OSError(error.errno, f"Could not write images {start}... to {self.path} ({error.strerror or error}); "
                          "the batches written so far are kept. Free some disk space and call evaluate again with "
                          "the same arguments to resume.") from None

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
