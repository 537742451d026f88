"""What a run is made of, and how to build it: the models, the data and the pruning sweep that a
checked config (:mod:`pescore_nb.runconfig`) describes. Building imports and runs the factories
a config names, like any Python code; a failure raises :class:`ConfigError` naming the field.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any, Callable, Sized, cast

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from . import data, prune, schema, zoo

class ConfigError(ValueError):
    """A bad config value; the message, one line, names the field and the fix."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")



@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build one model; ``field`` is where it sits in the config, for error messages."""

    field: str
    zoo: str | None = None
    dataset: str | None = None
    seed: int = 0
    factory: str | None = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    weights: Path | None = None
    pickle: Path | None = None
    pruner: str | None = None
    ratio: float | None = None

    def build(self) -> nn.Module:
        """The model in eval mode, on the CPU; a ConfigError when it cannot be built or loaded."""
        if self.zoo:
            if self.dataset is None:
                raise ConfigError(f"{self.field}.dataset", "missing; give the built-in dataset the zoo model "
                                  f"was trained on, one of {sorted(zoo.TRAINING)}.")
            return zoo.load(self.zoo, self.dataset, seed=self.seed)
        if self.pickle:
            model = self._load(self.pickle, "pickle", weights_only=False)
            if not isinstance(model, nn.Module):
                raise ConfigError(f"{self.field}.pickle", f"{self.pickle} holds a {type(model).__name__}, "
                                  "not a torch.nn.Module; save the model itself, or use factory + weights.")
        else:
            model = self._construct()
            if self.weights:
                self._load_state(model, self.weights)
        if self.pruner is not None or self.ratio is not None:
            meta = {schema.PRUNER: self.pruner or "unknown", schema.RATIO: self.ratio}
            setattr(model, schema.PRUNING_ATTRIBUTE, {k: v for k, v in meta.items() if v is not None})
        return model.eval()

    def _construct(self) -> nn.Module:
        field = f"{self.field}.factory"
        if self.factory is None:
            raise ConfigError(field, "missing; give one of zoo, factory ('package.module:callable') or pickle.")
        factory = import_factory(self.factory, field)
        try:
            model = factory(**self.kwargs)
        except Exception as error:
            raise ConfigError(f"{self.field}.kwargs", f"{self.factory}(**{self.kwargs}) failed: "
                              f"{type(error).__name__}: {error}; fix the keyword arguments.") from None
        if not isinstance(model, nn.Module):
            raise ConfigError(field, f"{self.factory} returned a {type(model).__name__}, not a "
                              "torch.nn.Module; point it at a callable that builds the model.")
        return model

    def _load(self, path: Path, key: str, weights_only: bool):
        try:
            return torch.load(path, map_location="cpu", weights_only=weights_only)
        except Exception as error:
            fix = ("save a state_dict with torch.save(model.state_dict(), path), or load a whole model "
                   "with 'pickle:' and --trust-pickle") if weights_only else "save it with torch.save(model, path)"
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ConfigError(f"{self.field}.{key}", f"{path} does not load ({message}); {fix}.") from None

    def _load_state(self, model: nn.Module, weights: Path) -> None:
        state = self._load(weights, "weights", weights_only=True)
        if not isinstance(state, dict):
            raise ConfigError(f"{self.field}.weights", f"{weights} holds a {type(state).__name__}, "
                              "not a state_dict; save it with torch.save(model.state_dict(), path).")
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            first = " ".join(str(error).split())[:300]
            raise ConfigError(f"{self.field}.weights", f"{weights} does not fit {self.factory}: "
                              f"{first}; give the weights of this architecture, or fix kwargs.") from None


def import_factory(factory: str, field: str) -> Callable:
    """The callable named ``"package.module:callable"``."""
    module_name, _, attribute = factory.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ConfigError(field, f"cannot import {factory!r} ({error}); give an importable "
                          "'package.module:callable' (the config's folder is importable).") from None
    except Exception as error:  # the module itself raised while being imported
        raise ConfigError(field, f"importing {module_name!r} raised {type(error).__name__}: {error}; fix that "
                          "module (it is imported and run like any Python code).") from None
    if not callable(found):
        raise ConfigError(field, f"{factory!r} is a {type(found).__name__}, not a callable; name a class or function.")
    return found


@dataclasses.dataclass(frozen=True)
class PruneSpec:
    """Candidates made by :func:`pescore_nb.prune.sweep`: every pruner at every ratio, once per seed.

    ``seed`` and ``seeds``: as in :func:`~pescore_nb.prune.sweep` (``seeds``: ``None``, a number of
    seeds from ``seed`` on, or the seeds themselves); ``data``: the training images that ``senpis``
    and ``taylor`` rank filters on and ``finetune`` trains on, never the evaluation data;
    ``finetune``: the recipe for every pruned copy and the unpruned ``control:finetune``, or
    ``None`` (no fine-tuning, no such control); ``workers``: how many models are made at once,
    each in its own process.
    """

    pruners: tuple[str, ...]
    ratios: tuple[float, ...]
    seed: int = 0
    seeds: tuple[int, ...] | int | None = None
    data: DataSpec | None = None
    finetune: FinetuneSpec | None = None
    workers: int = 1


@dataclasses.dataclass(frozen=True)
class FinetuneSpec:
    """A :class:`pescore_nb.prune.Finetune` recipe without its data: ``epochs`` passes of
    Adam(``lr``, its rate following ``schedule``) in batches of ``batch_size``, on the labels or,
    with ``distill``, on the reference's outputs softened by ``temperature``."""

    epochs: int
    lr: float
    batch_size: int
    distill: bool = False
    temperature: float = 2.0
    schedule: str = "cosine"

    def build(self, dataset: Dataset, device: str | None = None) -> prune.Finetune:
        """The recipe on ``dataset``, trained on ``device`` (``None``: where the model is)."""
        return prune.Finetune(dataset, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, device=device,
                              distill=self.distill, temperature=self.temperature, schedule=self.schedule)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Images to evaluate (or to prune on): a built-in dataset's split or a folder, optionally the
    first ``limit``."""

    source: str | Path
    split: str = "test"
    size: int = 224
    limit: int | None = None

    def build(self) -> Dataset:
        """The dataset, with ``classes`` (and ``masks`` for ``shapes``)."""
        dataset: Dataset
        if isinstance(self.source, Path):
            dataset = data.image_folder(self.source, size=self.size)
        else:
            dataset = data.builtin(self.source, self.split)
        return dataset if self.limit is None else first_images(dataset, self.limit)


def first_images(dataset: Dataset, count: int) -> Dataset:
    """The first ``count`` images of ``dataset``, keeping its ``classes`` and its ``masks (N, H, W)``."""
    subset: Any = Subset(dataset, range(min(count, len(cast(Sized, dataset)))))  # given the attributes below
    subset.classes = getattr(dataset, "classes")
    masks = getattr(dataset, "masks", None)
    subset.masks = None if masks is None else masks[:count]
    return subset
