"""pescore_nb: does a pruned CNN still look at the same pixels, with the same confidence?"""
from .metrics import PEConfig
from .scores import by_class, score

__all__ = ["PEConfig", "by_class", "score"]
