"""Moving the zoo's trained models between machines, e.g. to prepare a class of 20 computers.

    pescore cache export DIR   # on one machine: train what is missing, copy the cache into DIR
    pescore cache import DIR   # on each class machine: copy DIR's models into its cache

The folder holds the zoo's weight files (``<arch>-<dataset>-<hash>.pt``, the hash covering the
architecture, the training data and the recipe, so a file only ever loads where it was meant to) and
``MANIFEST.json``: the SHA-256 of every file, checked on import. Nothing is overwritten: a file
already in the cache with other bytes stops the import before anything is copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from pescore_nb import zoo

MANIFEST = "MANIFEST.json"
# The zoo models the notebooks and the demo load: (architecture, dataset, seed); seed 1 is the twin.
CLASS_MODELS = (("vgg", "shapes", 0), ("vgg", "shapes", 1), ("vit", "shapes", 0), ("vit", "shapes", 1))


def export_models(folder: str | Path, *, cache_dir: str | Path | None = None, progress: bool = True) -> list[Path]:
    """Train the :data:`CLASS_MODELS` missing from the cache (``cache_dir``, default
    :func:`pescore_nb.zoo.default_cache_dir`), then copy every zoo weight file of the cache and a
    ``MANIFEST.json`` of their SHA-256 into ``folder`` (created if needed; it must hold no weight file
    or manifest already). Returns the copied files."""
    folder = Path(folder).expanduser()
    if any(folder.glob("*.pt")) or (folder / MANIFEST).exists():
        raise FileExistsError(f"{folder} already holds exported models; export into an empty or new folder.")
    for arch, dataset, seed in CLASS_MODELS:
        zoo.load(arch, dataset, seed=seed, cache_dir=cache_dir, progress=progress)
    sources = sorted(Path(cache_dir or zoo.default_cache_dir()).expanduser().glob("*.pt"))
    folder.mkdir(parents=True, exist_ok=True)
    copied = [Path(shutil.copy2(source, folder / source.name)) for source in sources]
    (folder / MANIFEST).write_text(json.dumps({path.name: _sha256(path) for path in copied}, indent=1) + "\n")
    return copied


def import_models(folder: str | Path, *, cache_dir: str | Path | None = None) -> list[Path]:
    """Copy the weight files that :func:`export_models` put in ``folder`` into the cache (``cache_dir``,
    default :func:`pescore_nb.zoo.default_cache_dir`), after checking each against ``MANIFEST.json``.
    A file already in the cache with the same bytes is left as it is; one with other bytes, a file
    missing from ``folder`` or a file whose SHA-256 differs raise before anything is copied.
    Returns the files now in the cache that came from ``folder``."""
    folder = Path(folder).expanduser()
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} has no {MANIFEST}; pass a folder made by `pescore cache export`.")
    manifest = json.loads(manifest_path.read_text())
    cache = Path(cache_dir or zoo.default_cache_dir()).expanduser()
    for name, digest in manifest.items():
        source = folder / name
        if Path(name).name != name or not name.endswith(".pt"):
            raise ValueError(f"{MANIFEST} names {name!r}, not a weight file of the folder; export the folder again.")
        if not source.is_file():
            raise FileNotFoundError(f"{source} is listed in {MANIFEST} but missing; copy the whole exported folder.")
        if _sha256(source) != digest:
            raise ValueError(f"{source} does not match its SHA-256 in {MANIFEST} (a damaged or partial copy); "
                             "copy the exported folder again.")
        target = cache / name
        if target.exists() and _sha256(target) != digest:
            raise FileExistsError(f"{target} exists with other weights; move it away to import {folder}'s.")
    cache.mkdir(parents=True, exist_ok=True)
    for name in manifest:
        if not (cache / name).exists():  # via a partial file, as zoo.load saves: never half a model in the cache
            partial = cache / f"{name}.{os.getpid()}.partial"
            shutil.copy2(folder / name, partial)
            os.replace(partial, cache / name)
    return [cache / name for name in manifest]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
