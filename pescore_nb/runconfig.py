"""The YAML config of ``pescore run``: read and checked whole before anything runs.

Checking is all this module does; :mod:`pescore_nb.specs` builds the models and data it names.
A config names Python factories (``factory:``) that are imported and run, like any Python code:
run only configs you trust.

A sample (``examples/config.yaml`` runs it offline, fine-tuning on 300 images to stay quick)::

    reference:                      # the unpruned model: exactly one of zoo / factory / pickle
      zoo: vgg                      #   a pescore_nb.zoo model ...
      dataset: shapes               #   ... trained on this built-in dataset (trained once, cached)
      # factory: mypackage.models:build_net   # or "package.module:callable" returning the model,
      # kwargs: {num_classes: 6}              #    called with these keyword arguments,
      # weights: reference.pt                 #    then given this state_dict (weights_only=True)
      # pickle: reference-full.pt             # or a whole pickled model: needs --trust-pickle
    # twin: {zoo: vgg, dataset: shapes, seed: 1}   # optional control:twin, the same recipe, another seed
    prune:                          # candidates made from the reference by pescore_nb.prune.sweep ...
      pruner: [l2, random]          #   l1, l2, random, taylor, senpis, unstructured (one or a list)
      ratios: [0.2, 0.5, 0.8]
      seed: 0                       #   optional: seeds the random channels, the pruning sample, fine-tuning
      # seeds: 3                    #   optional: every model once per seed: seed, seed+1, seed+2 (or a list
                                    #   such as [0, 4]); names then end with the seed: l2@0.20/seed0
      # workers: 4                  #   optional: models made at once, each in its own process (default 1)
      data:                         #   training images, fields as in `data` below (split defaults to
        source: shapes              #   train): senpis and taylor rank filters on them (and need them),
        split: train                #   finetune trains on them; never the images you evaluate on
        limit: 1500
      finetune: {epochs: 1, lr: 5e-4, batch_size: 32}   # optional, each key too: fine-tune every pruned
                                    #   copy and the unpruned control:finetune on prune.data, on `device`;
                                    #   distill: true (temperature: 2.0) learns the reference's soft outputs;
                                    #   schedule: constant (default), cosine or linear (lr annealed to zero)
    # candidates:                   # ... or your own pruned models, by name (not both sections)
    #   mine-50:
    #     factory: mypackage.models:build_net
    #     kwargs: {num_classes: 6, width: 0.5}
    #     weights: pruned-50.pt
    #     pruner: mine              # optional: the pruning method, for tables and recommend
    #     ratio: 0.5                # optional: its pruning ratio
    data:
      source: shapes                # shapes, digits, or a folder with one sub-folder per class
      split: test                   # built-in data only: train or test
      limit: 120                    # optional: only the first N images
      # size: 224                   # folders only: images are resized and cropped to size x size
    layers: [features.16]           # optional when the reference has `cam_layers`
    # reshape_transform: vit        # optional: how a layer's output becomes (N, C, h, w), for token or
                                    #   channels-last layers (pescore_nb.layouts): vit, swin, or
                                    #   "package.module:callable"; {name: vit, prefix_tokens: 2} for DeiT;
                                    #   or by layer, each a transform: {blocks.11.norm1: vit}
    cams: [gradcam++]               # CAM methods (pescore_nb.cam.CAMS)
    sp2ps: false                    # optional: also store the Sp2PS score beside PE
    pe: {iou_threshold: 0.5, combine: product}   # any PEConfig field
    recommend: {pe_threshold: 0.8, max_accuracy_drop: 0.02}
    batch_size: 32
    device: cpu                     # optional: cpu, cuda, cuda:1, mps
    heatmap_size: [32, 32]          # optional: store smaller heatmaps (scores use full size)
    heatmap_dtype: float16          # optional: float32 (default) or float16
    output: pescore-results         # folder for results.nc and the figures

Relative paths (weights, pickles, folders, output) are relative to the config file's folder,
and that folder is importable, so ``factory: mymodels:Net`` finds ``mymodels.py`` beside it.
Every problem raises :class:`ConfigError`, whose one-line message names the field and the fix.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import re
import sys
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from . import cam, data, layouts, prune, schema, zoo
from .evaluation import HEATMAP_DTYPES
from .metrics import PEConfig
from .specs import ConfigError, DataSpec, FinetuneSpec, ModelSpec, PruneSpec, import_factory

REQUIRED = object()
RESULTS_FILE = "results.nc"
TRANSFORM_KEYS = ("name", "prefix_tokens")  # the keys of one reshape_transform given as a mapping


# ---------------------------------------------------------------- the keys a config may hold
@dataclasses.dataclass(frozen=True)
class Key:
    """One key of the YAML config, as the reader accepts it and the documentation lists it.

    ``section`` is where it goes: ``""`` (the top level), ``"model"`` (``reference``, ``twin`` and each
    candidate), ``"candidate"`` (a candidate's extra keys), ``"data"`` (``data`` and ``prune.data``),
    ``"prune"``, ``"prune.finetune"`` or ``"recommend"``; ``pe`` takes the fields of :class:`PEConfig`.
    ``source``: for a model key, the way of building the model it belongs to (``zoo``, ``factory``
    or ``pickle``).
    """

    section: str
    name: str
    takes: str
    default: str = ""
    source: str = ""


KEYS = (
    Key("", "reference", "the unpruned model (keys of a model)", "required"),
    Key("", "twin", "optional control:twin, the same recipe trained with another seed (keys of a model)"),
    Key("", "candidates", "your pruned models: a mapping from a name to a model (keys of a model and of "
        "a candidate); give either candidates or prune", "either this or prune"),
    Key("", "prune", "a sweep of the reference made by pescore_nb.prune.sweep", "either this or candidates"),
    Key("", "data", "the evaluation images: a built-in dataset's name, or a mapping (keys of data)", "required"),
    Key("", "layers", "module names to explain, e.g. [features.16]", "the reference's cam_layers"),
    Key("", "reshape_transform", "how a layer's output becomes (N, C, h, w) (pescore_nb.layouts): vit (tokens), "
        "swin (channels-last) or \"package.module:callable\"; {name: vit, prefix_tokens: 2} for two prefix "
        "tokens (DeiT); or a mapping from each of `layers` to one of these",
        "chosen for torchvision's ViT and Swin; other layers as they are"),
    Key("", "cams", "CAM methods (pescore_nb.cam.CAMS), one or a list", "[gradcam++]"),
    Key("", "pe", "any PEConfig field (see the metric)", "PEConfig()"),
    Key("", "recommend", "the trust rule's thresholds (keys of recommend)", "their defaults"),
    Key("", "sp2ps", "true or false: also store the Sp2PS score beside PE", "false"),
    Key("", "batch_size", "a positive integer", "32"),
    Key("", "device", "cpu, cuda, cuda:1 or mps", "torch's default"),
    Key("", "heatmap_size", "[height, width]: store smaller heatmaps (scores use full size)", "full size"),
    Key("", "heatmap_dtype", "float32 or float16", "float32"),
    Key("", "output", "the folder for results.nc, report.html and the figures", "pescore-results"),
    Key("model", "zoo", "a pescore_nb.zoo architecture, e.g. vgg", source="zoo"),
    Key("model", "dataset", "the built-in dataset the zoo model was trained on, e.g. shapes", source="zoo"),
    Key("model", "seed", "the zoo model's training seed, e.g. 1 for a twin of seed 0", "0", source="zoo"),
    Key("model", "factory", "\"package.module:callable\" returning the model", source="factory"),
    Key("model", "kwargs", "keyword arguments for the factory", "{}", source="factory"),
    Key("model", "weights", "a state_dict file saved with torch.save, loaded with weights_only=True",
        "none", source="factory"),
    Key("model", "pickle", "a whole model saved with torch.save(model, path); needs --trust-pickle",
        source="pickle"),
    Key("candidate", "pruner", "the pruning method's name, for tables and recommend", "none"),
    Key("candidate", "ratio", "its pruning ratio in [0, 1)", "none"),
    Key("data", "source", "shapes, digits, or a folder with one sub-folder per class", "required"),
    Key("data", "split", "built-in data only: train or test", "test (train under prune)"),
    Key("data", "size", "folders only: images are resized and cropped to size x size pixels", "224"),
    Key("data", "limit", "only the first N images", "all"),
    Key("prune", "pruner", "l1, l2, random, taylor, senpis or unstructured; one or a list", "required"),
    Key("prune", "ratios", "a list of ratios in [0, 1)", "required"),
    Key("prune", "seed", "the first seed: random channels, the pruning sample, fine-tuning", "0"),
    Key("prune", "seeds", "every model once per seed: a number n (seed ... seed+n-1) or a list", "one seed"),
    Key("prune", "workers", "models made at once, each in its own process", "1"),
    Key("prune", "data", "the training images (keys of data): senpis and taylor rank filters on them, "
        "finetune trains on them; never the evaluation images", "needed by senpis, taylor and finetune"),
    Key("prune", "finetune", "fine-tune every pruned copy and the unpruned control:finetune "
        "(keys of prune.finetune)", "no fine-tuning"),
    Key("prune.finetune", "epochs", "a number of epochs >= 1"),  # defaults: pescore_nb.prune.Finetune's fields
    Key("prune.finetune", "lr", "a positive learning rate, e.g. 5e-4"),
    Key("prune.finetune", "batch_size", "a positive integer"),
    Key("prune.finetune", "distill", "true: learn the reference's softened outputs instead of the labels"),
    Key("prune.finetune", "temperature", "the distillation temperature; only with distill: true"),
    Key("prune.finetune", "schedule", "cosine, linear or constant: how the learning rate is annealed"),
    Key("recommend", "pe_threshold", "a PE threshold in [0, 1] (the rule without a control)", "0.8"),
    Key("recommend", "max_accuracy_drop", "an accuracy drop in [0, 1], e.g. 0.02 for two points", "0.02"),
)


def keys_of(section: str) -> tuple[str, ...]:
    """The names of the keys in ``section`` of :data:`KEYS`, in order."""
    return tuple(key.name for key in KEYS if key.section == section)


TOP_KEYS = keys_of("")
PRUNE_KEYS = keys_of("prune")
DATA_KEYS = keys_of("data")
FINETUNE_KEYS = keys_of("prune.finetune")
RECOMMEND_KEYS = keys_of("recommend")
SOURCE_KEYS = {source: tuple(key.name for key in KEYS if key.section == "model" and key.source == source)
               for source in ("zoo", "factory", "pickle")}


# ---------------------------------------------------------------- reading fields
class _Section:
    """A config mapping at ``path`` (e.g. ``"data"``); every error names the full field path."""

    def __init__(self, values: Any, path: str, known: tuple[str, ...]):
        if values is None:
            raise ConfigError(path, f"missing; give a mapping with keys from {list(known)}.")
        if not isinstance(values, dict):
            raise ConfigError(path or "config", f"must be a mapping with keys from {list(known)}, "
                              f"got {type(values).__name__} {values!r}.")
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1) or [k for k in known if str(key) in k]
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(self._join(path, key), f"unknown key; {hint}known keys: {list(known)}.")
        self.values, self.path = values, path

    @staticmethod
    def _join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else str(key)

    def field(self, key: str) -> str:
        return self._join(self.path, key)

    def get(self, key: str, kinds: type | tuple, what: str, default: Any = REQUIRED,
            check: Callable[[Any], bool] = lambda value: True) -> Any:
        """``values[key]`` if it is one of ``kinds`` and passes ``check``, else a ConfigError."""
        if key not in self.values or self.values[key] is None:
            if default is REQUIRED:
                raise ConfigError(self.field(key), f"missing; give {what}.")
            return default
        value = self.values[key]
        if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
            ok = False  # YAML's yes/no are bools, never numbers
        else:
            ok = isinstance(value, kinds) and check(value)
        if not ok:
            raise ConfigError(self.field(key), f"got {value!r}; give {what}.")
        return value

    def names(self, key: str, what: str, choices: tuple[str, ...] | None = None, default: Any = REQUIRED):
        """A string or a non-empty list of strings, each in ``choices`` when given, as a tuple."""
        value = self.get(key, (str, list), what, default)
        if value is default:
            return value
        names = [value] if isinstance(value, str) else value
        if not names or not all(isinstance(name, str) for name in names):
            raise ConfigError(self.field(key), f"got {value!r}; give {what}.")
        for name in names:
            if choices is not None and name not in choices:
                close = difflib.get_close_matches(name, choices, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigError(self.field(key), f"unknown name {name!r}; {hint}choose from {list(choices)}.")
        return tuple(names)

    def path_of(self, key: str, base: Path, what: str, default: Any = REQUIRED, must_exist: bool = True):
        value = self.get(key, str, what, default)
        if value is default:
            return value
        path = (base / Path(value).expanduser()).resolve()
        if must_exist and not path.exists():
            raise ConfigError(self.field(key), f"{path} does not exist; give {what}.")
        return path


def _fraction(value) -> bool:
    return 0 <= value <= 1


# ---------------------------------------------------------------- the parts of a config
@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything ``pescore run`` needs, checked; see the module docstring for the YAML."""

    reference: ModelSpec
    candidates: dict[str, ModelSpec]
    prune: PruneSpec | None
    data: DataSpec
    layers: tuple[str, ...] | None
    reshape_transform: layouts.Transform | dict[str, layouts.Transform] | None
    cams: tuple[str, ...]
    sp2ps: bool
    twin: ModelSpec | None
    pe: PEConfig
    pe_threshold: float
    max_accuracy_drop: float
    batch_size: int
    device: str | None
    heatmap_size: tuple[int, int] | None
    heatmap_dtype: str
    output: Path

    @property
    def results(self) -> Path:
        return self.output / RESULTS_FILE


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``5e-4`` and ``1e3`` as numbers, as YAML 1.2 does (YAML 1.1,
    which PyYAML follows, needs a dot: ``5.0e-4``; without one a learning rate would be a string)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


def read(path: str | Path, trust_pickle: bool = False) -> RunConfig:
    """Read and check the config at ``path``; raises :class:`ConfigError` at the first problem."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ConfigError("config", f"{path} is not a file; give the path of a YAML config "
                          "(examples/config.yaml is a sample).")
    try:
        values = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("config", f"{path} is not valid YAML{where} ({getattr(error, 'problem', error)}); "
                          "fix the syntax.") from None
    base = path.parent
    if str(base) not in sys.path:  # modules beside the config are importable, after every installed package
        sys.path.append(str(base))
    top = _Section(values or {}, "", TOP_KEYS)
    reference = _model(top, "reference", base, trust_pickle, candidate=False)
    has_candidates, has_prune = top.values.get("candidates") is not None, top.values.get("prune") is not None
    if has_candidates == has_prune:
        raise ConfigError("candidates", "give either 'candidates' (your pruned models) or 'prune' (a sweep "
                          "of the reference), " + ("not both." if has_candidates else "one of them."))
    candidates = {}
    if has_candidates:
        if not isinstance(top.values["candidates"], dict) or not top.values["candidates"]:
            raise ConfigError("candidates", "give a mapping from a name to each pruned model, e.g. "
                              "{mine-50: {factory: mymodels:Net, weights: pruned-50.pt}}.")
        listed = _Section(top.values["candidates"], "candidates", tuple(top.values["candidates"]))
        for name in listed.values:
            if name == schema.REFERENCE:
                raise ConfigError(f"candidates.{name}", f"'{schema.REFERENCE}' names the reference; rename it.")
            candidates[str(name)] = _model(listed, name, base, trust_pickle, candidate=True)
    evaluation = _data(top, "data", base)
    layers = top.names("layers", "a list of module names, e.g. [features.13, features.16]", default=None)
    return RunConfig(
        reference=reference, candidates=candidates,
        prune=_prune(_Section(top.values["prune"], "prune", PRUNE_KEYS), base, evaluation) if has_prune else None,
        data=evaluation,
        layers=layers,
        reshape_transform=_reshape_transform(top, layers),
        cams=top.names("cams", "a list of CAM methods, e.g. [gradcam++]", cam.CAMS, default=("gradcam++",)),
        sp2ps=top.get("sp2ps", bool, "true or false: also store the Sp2PS score beside PE", False),
        twin=_model(top, "twin", base, trust_pickle, candidate=False) if top.values.get("twin") is not None else None,
        pe=_pe_config(top),
        **_thresholds(top),
        batch_size=top.get("batch_size", int, "a positive integer, e.g. 32", 32, lambda n: n >= 1),
        device=_device(top),
        heatmap_size=_heatmap_size(top),
        heatmap_dtype=top.get("heatmap_dtype", str, f"one of {list(HEATMAP_DTYPES)}", "float32",
                              lambda name: name in HEATMAP_DTYPES),
        output=top.path_of("output", base, "a folder for the results, e.g. pescore-results",
                           base / "pescore-results", must_exist=False))


def _model(parent: _Section, key: str, base: Path, trust_pickle: bool, candidate: bool) -> ModelSpec:
    known = keys_of("model") + (keys_of("candidate") if candidate else ())
    spec = _Section(parent.values.get(key), parent.field(key), known)
    sources = [source for source in SOURCE_KEYS if spec.values.get(source) is not None]
    if len(sources) != 1:
        raise ConfigError(spec.path, f"give exactly one of 'zoo', 'factory' or 'pickle' to say how to build "
                          f"the model, got {sources or 'none'}.")
    source = sources[0]
    for other in (key for keys in SOURCE_KEYS.values() for key in keys):
        if other in spec.values and other not in SOURCE_KEYS[source]:
            raise ConfigError(spec.field(other), f"does not go with '{source}'; remove it.")
    fields: dict[str, Any] = {"field": spec.path}
    if source == "zoo":
        fields["zoo"] = spec.get("zoo", str, f"one of {sorted(zoo.ARCHITECTURES)}", check=lambda a: a in zoo.ARCHITECTURES)
        fields["dataset"] = spec.get("dataset", str, f"the built-in dataset it was trained on, one of "
                                     f"{sorted(zoo.TRAINING)}", check=lambda d: d in zoo.TRAINING)
        fields["seed"] = spec.get("seed", int, "the training seed, e.g. 1 for a twin of seed 0", 0)
    elif source == "factory":
        fields["factory"] = spec.get("factory", str, "'package.module:callable', e.g. pescore_nb.zoo:VGG",
                                     check=lambda f: f.count(":") == 1 and all(f.split(":")))
        import_factory(fields["factory"], spec.field("factory"))
        fields["kwargs"] = spec.get("kwargs", dict, "a mapping of keyword arguments for the factory", {})
        fields["weights"] = spec.path_of("weights", base, "a state_dict file saved with torch.save", None)
    else:
        if not trust_pickle:
            raise ConfigError(spec.field("pickle"), "loading a whole pickled model runs code from the file; "
                              "pass --trust-pickle if you trust it, or use factory + weights (a state_dict).")
        fields["pickle"] = spec.path_of("pickle", base, "a model file saved with torch.save(model, path)")
    if candidate:
        fields["pruner"] = spec.get("pruner", str, "the name of the pruning method, e.g. l2", None)
        fields["ratio"] = spec.get("ratio", numbers.Real, "a pruning ratio in [0, 1), e.g. 0.5", None,
                                   lambda r: 0 <= float(r) < 1)
    return ModelSpec(**fields)


def _prune(section: _Section, base: Path, evaluation: DataSpec) -> PruneSpec:
    """The ``prune`` section; its ``data`` must be given for senpis, taylor and finetune, and must not
    be the ``evaluation`` data."""
    ratios = section.get("ratios", list, "a list of ratios in [0, 1), e.g. [0.2, 0.5, 0.8]")
    if not ratios or not all(isinstance(r, numbers.Real) and not isinstance(r, bool) and 0 <= float(r) < 1
                             for r in ratios):
        raise ConfigError(section.field("ratios"), f"got {ratios!r}; give a non-empty list of ratios in [0, 1), "
                          "e.g. [0.2, 0.5, 0.8].")
    pruners = section.names("pruner", f"one or more of {list(prune.PRUNERS)}", prune.PRUNERS)
    pruning_data = _data(section, "data", base, split="train") if section.values.get("data") is not None else None
    finetune = _finetune(section) if section.values.get("finetune") is not None else None
    fix = "give prune.data, e.g. {source: shapes, split: train}."
    needing = [name for name in pruners if name in prune.DATA_PRUNERS]
    if pruning_data is None and needing:
        raise ConfigError(section.field("data"), f"missing; pruner {needing[0]!r} ranks filters on training "
                          f"images and must never see the evaluation data: {fix}")
    if pruning_data is None and finetune is not None:
        raise ConfigError(section.field("data"), f"missing; prune.finetune trains on it and must never see the "
                          f"evaluation data: {fix}")
    if pruning_data is not None and _same_images(pruning_data, evaluation):
        raise ConfigError(section.field("data"), f"is the evaluation data ({_describe(evaluation)}); the "
                          "pruning and fine-tuning data must not be the images you evaluate on: give another "
                          "split, e.g. {source: shapes, split: train}, or another folder.")
    seed, seeds = _seeds(section)
    return PruneSpec(pruners=pruners, ratios=tuple(float(r) for r in ratios), seed=seed, seeds=seeds,
                     data=pruning_data, finetune=finetune,
                     workers=section.get("workers", int, "a number of worker processes >= 1, e.g. 4", 1,
                                         lambda n: n >= 1))


def _seeds(section: _Section) -> tuple[int, tuple[int, ...] | int | None]:
    """``prune.seed`` and ``prune.seeds``, checked by the rule of :func:`pescore_nb.prune.sweep`."""
    seed = section.get("seed", int, "an integer seed >= 0", 0, lambda n: n >= 0)
    seeds = section.get("seeds", (int, list), "a number of seeds, e.g. 3, or a list of seeds, e.g. [0, 1, 2]", None)
    try:
        prune.seed_list(seed, seeds)
    except ValueError as error:
        raise ConfigError(section.field("seeds"), str(error)) from None
    return seed, tuple(seeds) if isinstance(seeds, list) else seeds


def _finetune(parent: _Section) -> FinetuneSpec:
    """``parent.finetune``: a :class:`pescore_nb.prune.Finetune` recipe, its defaults for missing keys."""
    section = _Section(parent.values["finetune"], parent.field("finetune"),
                       FINETUNE_KEYS)
    default = {field.name: field.default for field in dataclasses.fields(prune.Finetune)}
    if "temperature" in section.values and not section.values.get("distill"):
        raise ConfigError(section.field("temperature"), "does nothing without distill: true (it softens the "
                          "reference's outputs for distillation); add distill: true, or remove temperature.")
    return FinetuneSpec(
        epochs=section.get("epochs", int, "a number of epochs >= 1, e.g. 1", default["epochs"], lambda n: n >= 1),
        lr=float(section.get("lr", numbers.Real, "a positive learning rate, e.g. 5e-4", default["lr"],
                             lambda r: math.isfinite(r) and r > 0)),
        batch_size=section.get("batch_size", int, "a positive integer, e.g. 32", default["batch_size"],
                               lambda n: n >= 1),
        distill=section.get("distill", bool, "true or false: fine-tune on the reference's soft outputs",
                            default["distill"]),
        temperature=float(section.get("temperature", numbers.Real, "a positive temperature, e.g. 2.0",
                                      default["temperature"], lambda t: math.isfinite(t) and t > 0)),
        schedule=section.get("schedule", str, f"one of {list(prune.SCHEDULES)}", default["schedule"],
                             lambda name: name in prune.SCHEDULES))


def _same_images(one: DataSpec, other: DataSpec) -> bool:
    """Whether two data specs draw on the same images: one folder, or one split of a built-in dataset."""
    return one.source == other.source and (isinstance(one.source, Path) or one.split == other.split)


def _describe(spec: DataSpec) -> str:
    return f"folder {spec.source}" if isinstance(spec.source, Path) else f"{spec.source}, split {spec.split}"


def _data(parent: _Section, key: str, base: Path, split: str = "test") -> DataSpec:
    """``parent.key``: a data section (or just its source), ``split`` when none is given."""
    values = parent.values.get(key)
    section = _Section({"source": values} if isinstance(values, str) else values, parent.field(key), DATA_KEYS)
    source = section.get("source", str, f"a built-in dataset {sorted(data.BUILTIN)} or a folder of class sub-folders")
    if source not in data.BUILTIN:
        folder = (base / Path(source).expanduser()).resolve()
        if not folder.is_dir():
            raise ConfigError(section.field("source"), f"{source!r} is neither a built-in dataset "
                              f"{sorted(data.BUILTIN)} nor a folder ({folder} does not exist); fix the name or path.")
        source = folder
    return DataSpec(source=source,
                    split=section.get("split", str, f"one of {list(data.SPLITS)}", split, lambda s: s in data.SPLITS),
                    size=section.get("size", int, "an image size in pixels >= 16, e.g. 224", 224, lambda n: n >= 16),
                    limit=section.get("limit", int, "a positive number of images", None, lambda n: n >= 1))


def _reshape_transform(top: _Section, layers: tuple[str, ...] | None):
    """``reshape_transform``: one transform for every layer, or a mapping from each of ``layers`` to one
    (the layers it leaves out get the automatic choice of :func:`pescore_nb.layouts.resolve`)."""
    value = top.values.get("reshape_transform")
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) & set(TRANSFORM_KEYS):
        return _one_transform(value, "reshape_transform")
    if layers is None:
        raise ConfigError("reshape_transform", f"gives transforms by layer {list(value)} but the config lists "
                          "no layers; add them, e.g. layers: [" + ", ".join(map(str, value)) + "].")
    for layer in value:
        if layer not in layers:
            raise ConfigError(f"reshape_transform.{layer}", f"is not one of layers {list(layers)}; give each "
                              f"listed layer its transform, or one transform as {{name: vit, prefix_tokens: 1}}.")
    return {layer: _one_transform(transform, f"reshape_transform.{layer}") for layer, transform in value.items()}


def _one_transform(value: Any, field: str) -> layouts.Transform:
    """One transform: a name (``vit``, ``swin``, ``package.module:callable``) or ``{name:, prefix_tokens:}``."""
    names = sorted(layouts.NAMED)
    what = f"one of {names}, an import path 'package.module:callable', or {{name: vit, prefix_tokens: 2}}"
    if not isinstance(value, (str, dict)):
        raise ConfigError(field, f"got {value!r}; give {what}.")
    section = _Section({"name": value} if isinstance(value, str) else value, field, TRANSFORM_KEYS)
    name_field = field if isinstance(value, str) else section.field("name")
    name = section.get("name", str, what)
    prefix_tokens = section.get("prefix_tokens", int, "the tokens before the patch grid, an integer >= 0 "
                                "(1 for ViT's class token, 2 for DeiT)", None, lambda n: n >= 0)
    if prefix_tokens is not None and name != "vit":
        raise ConfigError(section.field("prefix_tokens"), f"goes only with name: vit, not {name!r}; remove it.")
    if name == "vit" and prefix_tokens is not None:
        return layouts.TokenGrid(prefix_tokens)
    if name in layouts.NAMED:
        return layouts.NAMED[name]()
    if ":" not in name:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(name_field, f"unknown transform {name!r}; {hint}give {what}.")
    return import_factory(name, name_field)


def _pe_config(top: _Section) -> PEConfig:
    fields = tuple(field.name for field in dataclasses.fields(PEConfig))
    section = _Section(top.values.get("pe") or {}, "pe", fields)
    try:
        return PEConfig(**section.values)
    except (TypeError, ValueError) as error:
        raise ConfigError("pe", f"{error} Fix the value in the config.") from None


def _thresholds(top: _Section) -> dict[str, float]:
    section = _Section(top.values.get("recommend") or {}, "recommend", RECOMMEND_KEYS)
    return {"pe_threshold": float(section.get("pe_threshold", numbers.Real, "a PE threshold in [0, 1], e.g. 0.8",
                                              0.8, _fraction)),
            "max_accuracy_drop": float(section.get("max_accuracy_drop", numbers.Real,
                                                   "an accuracy drop in [0, 1], e.g. 0.02 for two points",
                                                   0.02, _fraction))}


def _device(top: _Section) -> str | None:
    name = top.get("device", str, "a torch device such as cpu, cuda or cuda:0", None)
    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError("device", f"{name!r} is not a torch device; give cpu, cuda, cuda:0 or mps.") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise ConfigError("device", f"{name!r} is not available on this machine; use cpu, or run where it is.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError("device", f"{name!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                          "pick an index below that.")
    return name


def _heatmap_size(top: _Section) -> tuple[int, int] | None:
    size = top.get("heatmap_size", list, "[height, width] in pixels, e.g. [32, 32]", None,
                   lambda s: len(s) == 2 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in s))
    return None if size is None else tuple(size)

