"""pescore_nb: does a pruned CNN still look at the same pixels, with the same confidence?"""
from .cam import CamEngine
from .explorer import explore
from .metrics import PEConfig
from . import accessor  # registers ds.pescore
from .scores import by_class, score

__all__ = ["CamEngine", "PEConfig", "explore", "by_class", "score"]
