"""pescore_nb: does a pruned CNN still look at the same pixels, with the same confidence?

Importing the package loads neither ipywidgets nor matplotlib: ``explore`` and ``report`` (and
the ``ds.pescore`` accessor's views) load them when first used.
"""
__version__ = "0.5.1"

from . import accessor  # registers the ds.pescore accessor
from .cam import CamEngine
from .evaluation import evaluate
from .metrics import PEConfig
from .scores import by_class, score
from .sp2ps import Sp2PSConfig
from .store import load, save
from .trust import assess, recommend

__all__ = ["CamEngine", "PEConfig", "Sp2PSConfig", "assess", "by_class", "evaluate", "explore", "load",
           "recommend", "report", "save", "score"]


def __getattr__(name: str):
    if name == "explore":  # ipywidgets is imported only when the explorer is asked for
        from .explorer import explore

        return explore
    if name == "report":  # matplotlib is imported only when a report is asked for
        from .html_report import report

        return report
    raise AttributeError(f"module 'pescore_nb' has no attribute {name!r}")
