"""Interactive explorers of a results Dataset (ipywidgets); they read the Dataset, never a model."""
from .app import Explorer, explore

__all__ = ["Explorer", "explore"]
