"""The ``ds.pescore`` accessor: pescore_nb's views and reductions as methods of a results Dataset.

The views load ipywidgets and matplotlib only when called, so ``import pescore_nb`` stays light.
"""
from __future__ import annotations

import xarray as xr

from . import schema
from .scores import by_class, score


@xr.register_dataset_accessor("pescore")
class PEScoreAccessor:
    """``ds.pescore.explore()``, ``ds.pescore.score()``, ``ds.pescore.by_class()`` on a results Dataset."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def explore(self):
        """The interactive explorer of this Dataset (see :class:`pescore_nb.explorer.Explorer`)."""
        from .explorer import explore

        return explore(self._ds)

    def report(self, path="report.html", **options):
        """:func:`pescore_nb.report` of this Dataset: one self-contained HTML file; returns its path."""
        from .html_report import report

        return report(self._ds, path, **options)

    def score(self, variable: str = schema.PE, class_weights: str | None = None, *,
              skipna: bool = False) -> xr.DataArray:
        """:func:`pescore_nb.score` of this Dataset: ``(model, layer, cam)``."""
        return score(self._ds, variable, class_weights, skipna=skipna)

    def by_class(self, variable: str = schema.PE, *, skipna: bool = False) -> xr.DataArray:
        """:func:`pescore_nb.by_class` of this Dataset: ``(model, layer, cam, label)``."""
        return by_class(self._ds, variable, skipna=skipna)
