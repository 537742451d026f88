"""pescore_nb: does a pruned CNN still look at the same pixels, with the same confidence?"""
__version__ = "0.1.0"

from .cam import CamEngine
from .evaluate import evaluate
from .explorer import explore
from .metrics import PEConfig
from .scores import by_class, score
from .sp2ps import Sp2PSConfig
from .store import load, save
from . import accessor  # registers the ds.pescore accessor

__all__ = ["CamEngine", "PEConfig", "Sp2PSConfig", "by_class", "evaluate", "explore", "load", "save", "score"]
