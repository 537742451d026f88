"""The ``ds.pescore`` accessor: pescore_nb's views and reductions as methods of a results Dataset."""
from __future__ import annotations

import xarray as xr

from . import schema
from .explorer import Explorer, explore
from .scores import by_class, score


@xr.register_dataset_accessor("pescore")
class PEScoreAccessor:
    """``ds.pescore.explore()``, ``ds.pescore.score()``, ``ds.pescore.by_class()`` on a results Dataset."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def explore(self) -> Explorer:
        """The interactive explorer of this Dataset (see :class:`pescore_nb.explorer.Explorer`)."""
        return explore(self._ds)

    def score(self, variable: str = schema.PE, how: str | None = None) -> xr.DataArray:
        """:func:`pescore_nb.score` of this Dataset: ``(model, layer, method)``."""
        return score(self._ds, variable, how)

    def by_class(self, variable: str = schema.PE) -> xr.DataArray:
        """:func:`pescore_nb.by_class` of this Dataset: ``(model, layer, method, class)``."""
        return by_class(self._ds, variable)
