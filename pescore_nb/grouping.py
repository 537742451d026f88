"""A results Dataset seen by seed group, as every view shows it.

A group is a candidate (or control) made with one or several fine-tuning seeds
(:func:`pescore_nb.structure.seed_groups`: ``"l2@0.30/seed0"``, ``"l2@0.30/seed1"``, ... form the
group ``"l2@0.30"``). Views draw and list groups, named as :func:`pescore_nb.trust.assess` names
them: :func:`seed_view` turns a Dataset into one whose ``model`` dimension holds the group names,
either averaged over the seeds or restricted to one seed (the spread over the seeds is
:func:`pescore_nb.structure.by_group` with ``"min"`` and ``"max"``).
"""
from __future__ import annotations

from typing import Any, Hashable

import numpy as np
import xarray as xr

from . import schema, structure

CORRECT = "correct"  # (model, image) float: the share of a group's seeds that predicted the label


def several_seeds(ds: xr.Dataset) -> bool:
    """True when some group holds more than one model (several fine-tuning seeds)."""
    return any(len(members) > 1 for members in structure.seed_groups(ds).values())


def seed_view(ds: xr.Dataset, seed: int | None = None) -> xr.Dataset:
    """``ds`` with one model per group, named by the group: ``seed=None`` averages each group over
    its seeds (:func:`mean_over_seeds`); an int keeps that seed's models only
    (:func:`pescore_nb.structure.one_seed`: what that seed alone would have given). Either way the
    groups come in the order of :func:`pescore_nb.structure.seed_groups`, so positions agree."""
    if seed is None:
        return mean_over_seeds(ds)
    if not several_seeds(ds):
        if int(seed) not in structure.all_seeds(ds):
            raise ValueError(f"No model was fine-tuned with seed {seed}; the seeds are {structure.all_seeds(ds)}. "
                             "Pass one of them, or seed=None for the mean over seeds.")
        return mean_over_seeds(ds)
    view = mean_over_seeds(structure.one_seed(ds, int(seed)))
    return view.sel({schema.MODEL: list(structure.seed_groups(ds))})


def mean_over_seeds(ds: xr.Dataset) -> xr.Dataset:
    """One model per group ``(model=group, ...)``: the per-image variables averaged over the group's
    seeds (``degenerate``: any seed's), :data:`CORRECT` (the share of seeds that predicted the
    label, when ``pred`` is stored), the ``accuracy`` coordinate averaged, the other coordinates
    of the group's first model, ``seed`` -1 for groups of several.

    The class-weighted score of the averaged per-image values is the mean of the seeds' scores.
    Groups of one keep every variable (``heatmap``, ``pred``); with several seeds ``heatmap`` and
    ``pred`` are left out (a map or a prediction averaged over seeds is no model's).
    """
    groups = structure.seed_groups(ds)
    if schema.PRED in ds:
        ds = ds.assign({CORRECT: (ds[schema.PRED] == ds[schema.LABEL]).astype(np.float64)})
    if all(len(members) == 1 for members in groups.values()):
        return ds.assign_coords({schema.MODEL: list(groups)})  # the Dataset's order is the groups' order
    per_model = [name for name, values in ds.data_vars.items()
                 if schema.MODEL in values.dims and name not in (schema.HEATMAP, schema.PRED)]
    averaged = xr.concat([_reduced(ds[per_model].sel({schema.MODEL: members})) for members in groups.values()],
                         dim=schema.MODEL)
    firsts = ds[schema.MODEL].sel({schema.MODEL: [members[0] for members in groups.values()]})
    coords: dict[Hashable, tuple[str, Any]] = {name: (schema.MODEL, firsts[name].values) for name in firsts.coords
              if name != schema.MODEL and firsts[name].dims == (schema.MODEL,)}
    if schema.ACCURACY in coords:
        coords[schema.ACCURACY] = (schema.MODEL, [float(ds[schema.ACCURACY].sel({schema.MODEL: members}).mean())
                                                  for members in groups.values()])
    if schema.SEED in coords:
        coords[schema.SEED] = (schema.MODEL, [int(firsts[schema.SEED].values[i]) if len(members) == 1
                                              else schema.NO_SEED for i, members in enumerate(groups.values())])
    shared = ds[[name for name, values in ds.data_vars.items() if schema.MODEL not in values.dims]]
    view = xr.merge([averaged.assign_coords({schema.MODEL: list(groups), **coords}), shared],
                    combine_attrs="override")
    view.attrs = dict(ds.attrs)
    return view


def _reduced(members: xr.Dataset) -> xr.Dataset:
    """The mean over ``model`` of each variable; booleans (``degenerate``): any."""
    return xr.Dataset({name: values.any(schema.MODEL) if values.dtype == bool else values.mean(schema.MODEL)
                       for name, values in members.data_vars.items()})


def shown_seed(ds: xr.Dataset, seed: int | None = None) -> int | None:
    """The seed whose maps a view shows: ``seed``, else the smallest one when groups have several;
    None when no group has several seeds (each model's own maps are shown)."""
    if seed is not None:
        return int(seed)
    return structure.all_seeds(ds)[0] if several_seeds(ds) else None
