"""`evaluate`: images -> CAMs of the reference and each candidate -> scores -> one labelled Dataset.

Batches flow one way: a batch of images -> every model's `CamEngine` -> the metrics (on the
device, from full-resolution float32 maps) -> one small Dataset per batch (a *chunk*) -> kept in
memory, or written to a Zarr store as it goes (``store=``) so a killed run resumes, and so dask
workers (``client=``) can share the work.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import warnings
from typing import Callable, Hashable, Iterable, Iterator, Mapping, Sequence, Sized, cast

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler, Subset
from tqdm.auto import tqdm

from . import schema
from .cam import CamEngine, CamOutput, check_images, check_logits
from .digests import TRAINING_HASHES, image_hashes, sequence_digest
from .metrics import IoUReference, PEConfig, SSIMReference, combine, confidence
from .scores import DegenerateMapWarning
from .sp2ps import Sp2PSConfig, Sp2PSReference
from .store import ZarrRun

HEATMAP_DTYPES = ("float32", "float16")
OUTPUTS = ("auto", "logits", "probabilities")
ModelOrFactory = nn.Module | Callable[[], nn.Module]


def evaluate(reference: ModelOrFactory, candidates: Mapping[str, ModelOrFactory], data: Dataset | DataLoader, *,
             layers: Sequence[str] | str, cams: Sequence[str] | str = ("gradcam++",), batch_size: int = 32,
             device: str | torch.device | None = None, config: PEConfig = PEConfig(),
             class_names: Sequence[str] | None = None, sp2ps_config: Sp2PSConfig | None = None,
             heatmap_size: tuple[int, int] | None = None, heatmap_dtype: str = "float32", outputs: str = "auto",
             allow_overlap: bool = False, reshape_transform=None, store: str | None = None, client=None,
             progress: bool = True) -> xr.Dataset:
    """PE-score of each candidate against the reference, for every layer, CAM method and image.

    reference: the unpruned model; candidates: name -> pruned model or control (same layer names,
    same classes); with ``client`` either may be a picklable factory returning the model. data: a
    torch Dataset of ``(image (C, H, W), label)`` (labels >= 0) or an in-order DataLoader over one.
    layers, cams: qualified module names present in every model, and CAM methods (one name or a
    list; duplicates are refused).

    Returns the Dataset described in :mod:`pescore_nb.schema`: ``heatmap (model, layer, cam,
    image, y, x)``, ``prob``/``pred (model, image)``, ``ssim``/``iou``/``conf``/``pe``/``degenerate
    (model, layer, cam, image)``, ``sp2ps`` beside ``pe`` when ``sp2ps_config`` is given,
    ``energy_in_mask`` when the data has ``masks (N, H, W)``, and ``input (image, channel, y, x)``
    uint8 pictures for display. Each model's ``role``, ``pruner``, ``ratio``, ``seed`` and
    ``provenance`` come from its ``pescore_pruning`` metadata (set by :func:`pescore_nb.prune.sweep`);
    a model without it is a candidate of unknown pruner and ratio, without a seed (-1). Scores always come from full-resolution
    float32 maps; the stored heatmaps (and pictures) may be smaller (``heatmap_size=(h, w)``)
    and/or ``float16``.

    outputs: what the models return. ``"auto"`` (the default) and ``"logits"``: class scores, turned
    into probabilities by a softmax; with ``"auto"`` an output whose rows are non-negative and sum
    to 1 (a softmax already applied) is refused, and one that lies in [0, 1] (a sigmoid?) gets a
    warning. ``"probabilities"``: the outputs are used as probabilities as they are. A softmax is
    never applied twice.

    allow_overlap: a model made by :func:`pescore_nb.prune.sweep` remembers (by 64-bit hashes) the
    images it was pruned and fine-tuned on; evaluating it on any of them is refused, naming the
    count, unless ``allow_overlap=True`` (recorded in the attrs, with the overlaps).

    Every model's ``images_digest`` coordinate records the images it was evaluated on (one extra
    pass over the data, without the models), so results concatenated from other runs are never
    paired image by image with these. A warning gives the count of degenerate maps (constant, no
    CAM signal) of each model that has any.

    reshape_transform: how each layer's output becomes ``(N, C, h, w)``, for every model (see
    :class:`~pescore_nb.cam.CamEngine` and :mod:`pescore_nb.layouts`): ``None`` is automatic for
    torchvision's ViT and Swin; ``"vit"``, ``"swin"``, a callable, or a dict of those by layer.

    store: a ``.zarr`` path written batch by batch; the returned Dataset is opened lazily from it.
    Started again with the same arguments and data, a killed run continues where it stopped; a
    store written with other arguments or other data is refused, naming what differs.
    client: a ``dask.distributed.Client`` whose workers share the batches (needs ``store``).
    The user's models are left as found, also when one model is passed twice.
    """
    if heatmap_dtype not in HEATMAP_DTYPES:
        raise ValueError(f"heatmap_dtype must be one of {HEATMAP_DTYPES}, got {heatmap_dtype!r}.")
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {OUTPUTS}, got {outputs!r}: 'auto' for logits (a softmax "
                         "already applied is refused), 'probabilities' when the model ends with a softmax.")
    if not isinstance(allow_overlap, bool):
        raise ValueError(f"allow_overlap must be True or False, got {allow_overlap!r}.")
    heatmap_size = _checked_size(heatmap_size)
    if client is not None and store is None:
        raise ValueError("evaluate(client=...) writes through a Zarr store: pass store='results.zarr' too.")
    layers, cams = _names("layers", layers), tuple(name.lower() for name in _names("cams", cams))
    if store is not None and "randomcam" in cams:
        raise ValueError("'randomcam' draws new random maps on every call, so a resumed store would mix two "
                         "draws; use it without store=, or choose a deterministic CAM method.")
    device = _checked_device(device)
    models = _named_models(reference, candidates)
    dataset, batch_size, collate_fn = _source(data, batch_size)
    names = list(class_names or _dataset_attribute(dataset, "classes") or []) or None
    job = _Job(models, dataset, collate_fn, layers, cams, device, config, sp2ps_config, heatmap_size, heatmap_dtype,
               names, outputs, reshape_transform)
    built = _built(models)
    _check_restorable(built)
    engines = job.engines(built)
    with _entered(engines):  # the models are prepared once for the whole call
        example = job.first_image()
        job = dataclasses.replace(job, image_shape=tuple(example.shape[1:]))
        job.check_models(engines, example)
        ranges = _batch_ranges(job.count, batch_size)
        seen = job.data_pass(ranges)
        overlaps = _training_overlaps(dict(zip(models, built)), seen.hashes, allow_overlap)
        info = [_model_info(engine.model, example, name == schema.REFERENCE, seen.images_digest)
                for name, engine in zip(models, engines)]
        attrs = _attrs(job, type(engines[0].model).__name__, example, allow_overlap, overlaps)
        if store is None:
            bar = tqdm(total=len(ranges), desc="PE-score", unit="batch", disable=not progress)
            chunks = [chunk for _, chunk in job.run(engines, ranges, after_each=lambda: bar.update())]
            bar.close()
            ds = _concatenated(chunks)
            return _warn_degenerate(_finish(ds, info, attrs, _accuracy(ds).values))
        arguments = _run_arguments(job, engines, batch_size, seen)
        run = ZarrRun.open_or_create(store, arguments, lambda: _template(job.first_chunk(engines), job.count,
                                                                         batch_size, info, attrs))
        done = run.done()
        todo = [(start, stop) for start, stop in ranges if not done[start:stop].all()]
        bar = tqdm(total=len(ranges), initial=len(ranges) - len(todo), desc="PE-score", unit="batch",
                   disable=not progress)
        if client is None:
            for start, chunk in job.run(engines, todo):
                run.write(chunk, start)
                bar.update()
    if client is not None:  # the workers build their own models from the job, sent as the user gave them
        _run_distributed(client, job, todo, store, bar)
    bar.close()
    return _warn_degenerate(run.finish(_accuracy))


@dataclasses.dataclass(frozen=True)
class _DataSeen:
    """What one pass over the evaluated data gives: a 64-bit hash per image ``(N,)``, their digest, and the
    labels' digest."""

    hashes: np.ndarray
    images_digest: str
    labels_digest: str


def _training_overlaps(models: Mapping[str, nn.Module], hashes: np.ndarray, allow_overlap: bool) -> dict[str, int]:
    """How many evaluated images each model was pruned or fine-tuned on (models that remember theirs);
    refused unless ``allow_overlap``."""
    overlaps = {}
    for name, model in models.items():
        seen = getattr(model, TRAINING_HASHES, None)
        if seen is not None:
            count = int(np.isin(hashes, np.asarray(seen, dtype=np.uint64)).sum())
            if count:
                overlaps[name] = count
    if overlaps and not allow_overlap:
        listed = ", ".join(f"{name}: {count} of {len(hashes)}" for name, count in overlaps.items())
        raise ValueError(f"Some evaluated images are images the models were pruned or fine-tuned on ({listed}): "
                         "their maps and confidences would be judged on data the models learnt. Evaluate on "
                         "held-out images (e.g. the test split), or pass allow_overlap=True to accept it "
                         "(recorded in the results' attrs).")
    return overlaps


def _warn_degenerate(ds: xr.Dataset) -> xr.Dataset:
    """Warn once, with the count of each model that has any, when maps are degenerate; returns ``ds``."""
    counts = ds[schema.DEGENERATE].sum((schema.LAYER, schema.CAM, schema.IMAGE)).values
    total = ds[schema.DEGENERATE].isel({schema.MODEL: 0}).size
    if counts.any():
        listed = ", ".join(f"{name} {int(count)} of {total}" for name, count
                           in zip(ds[schema.MODEL].values.tolist(), counts) if count)
        every = " Every map of the reference is degenerate: its classifier gives no gradient (torchvision's " \
            "VisionTransformer zero-initialises its head, so an untrained one has none); train it first." \
            if counts[0] == total else ""
        warnings.warn(f"Degenerate maps (constant, no CAM signal) per model: {listed}. SSIM and IoU say nothing "
                      "about them; a verdict where more than 10 % of a candidate's paired maps are degenerate is "
                      "'not assessable'. Choose another layer or CAM method, or check that the model's "
                      f"classifier has gradients (an untrained or zero-initialised head gives none).{every}",
                      DegenerateMapWarning, stacklevel=3)
    return ds


def _concatenated(chunks: list[xr.Dataset]) -> xr.Dataset:
    """The batches' chunks joined along ``image`` (numpy concatenation: no alignment to check)."""
    first = chunks[0]

    def joined(name: Hashable):
        variable = first[name]
        axis = variable.dims.index(schema.IMAGE)
        return variable.dims, np.concatenate([chunk[name].values for chunk in chunks], axis=axis)

    image_coords = [name for name, coord in first.coords.items() if schema.IMAGE in coord.dims]
    other_coords = {name: coord for name, coord in first.coords.items() if schema.IMAGE not in coord.dims}
    return xr.Dataset({name: joined(name) for name in first.data_vars},
                      coords={**other_coords, **{name: joined(name) for name in image_coords}})


def _names(parameter: str, names: Sequence[str] | str) -> tuple[str, ...]:
    """``names`` as a tuple: one string is one name; empty or repeated names are refused."""
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names or not all(isinstance(name, str) for name in names):
        raise ValueError(f"{parameter} must be a name or a non-empty list of names, got {names!r}.")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{parameter} lists {repeated} more than once; give each once.")
    return names


def _checked_device(device: str | torch.device | None) -> str | None:
    """``device`` as a string, refused before any model is moved when it cannot hold and give back weights."""
    if device is None:
        return None
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:0'.") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(parsed.type, False):
        raise ValueError(f"device={device!r} cannot run the models and give their weights back (it is "
                         f"{'a device without data' if parsed.type == 'meta' else 'not available here'}); "
                         "use 'cpu', or a CUDA device on a machine that has one.")
    return str(parsed)


def _check_restorable(models: list[nn.Module]) -> None:
    """Refuse models whose weights are on the meta device (no data to compute with or to restore)."""
    for model in models:
        if any(tensor.is_meta for tensor in list(model.parameters()) + list(model.buffers())):
            raise ValueError(f"{type(model).__name__} has weights on the 'meta' device (no data); load real "
                             "weights first, e.g. model.to_empty(device='cpu') then load_state_dict.")


def _named_models(reference: ModelOrFactory, candidates: Mapping[str, ModelOrFactory]) -> dict[str, ModelOrFactory]:
    if not isinstance(candidates, Mapping):
        raise TypeError("candidates must map a name to a model, e.g. {'l2@0.30': pruned_model}.")
    if schema.REFERENCE in candidates:
        raise ValueError(f"'{schema.REFERENCE}' names the reference model; give the candidate another name.")
    return {schema.REFERENCE: reference, **candidates}


def _built(models: Mapping[str, ModelOrFactory]) -> list[nn.Module]:
    built = [model if isinstance(model, nn.Module) else model() for model in models.values()]
    wrong = [name for name, model in zip(models, built) if not isinstance(model, nn.Module)]
    if wrong:
        raise TypeError(f"{wrong} are neither torch models nor factories returning one.")
    return built


def _checked_size(size) -> tuple[int, int] | None:
    """``heatmap_size`` as ``(h, w)`` of positive ints, or None."""
    if size is None:
        return None
    values = tuple(size) if isinstance(size, (tuple, list)) else ()
    if len(values) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"heatmap_size must be (height, width) in pixels, two integers >= 1 such as (32, 32), or "
                         f"None for the input size; got {size!r}.")
    return values


def _source(data: Dataset | DataLoader, batch_size: int) -> tuple[Dataset, int, Callable | None]:
    """The dataset, the batch size and the collate function to batch it with."""
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler) or data.batch_size is None:
            raise ValueError("The DataLoader must iterate in order (shuffle=False, no sampler) so each "
                             "result keeps its image's index; pass the Dataset itself to let evaluate batch it.")
        dataset, batch_size, collate_fn = data.dataset, data.batch_size, data.collate_fn
    else:
        dataset, collate_fn = data, None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1 (images per batch), such as 32; got {batch_size!r}.")
    if len(cast(Sized, dataset)) == 0:
        raise ValueError("The dataset is empty: evaluate needs at least one (image, label) pair.")
    return dataset, batch_size, collate_fn


def _dataset_attribute(dataset: Dataset, name: str):
    """``dataset.classes``, ``dataset.name`` or ``dataset.masks (N, H, W)``, also through (nested) torch
    Subsets; None if absent."""
    if not isinstance(dataset, Subset):
        return getattr(dataset, name, None)
    base = _dataset_attribute(dataset.dataset, name)
    if base is None or name in ("classes", "name"):
        return base
    return base[torch.as_tensor(dataset.indices)]


def _batch_ranges(count: int, batch_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + batch_size, count)) for start in range(0, count, batch_size)]


@dataclasses.dataclass(frozen=True)
class _Job:
    """What turns batches of images into chunks of results; picklable, so dask workers can run it."""

    models: Mapping[str, ModelOrFactory]
    dataset: Dataset
    collate_fn: Callable | None
    layers: tuple[str, ...]
    cams: tuple[str, ...]
    device: str | None
    config: PEConfig
    sp2ps_config: Sp2PSConfig | None
    heatmap_size: tuple[int, int] | None
    heatmap_dtype: str
    class_names: list[str] | None
    outputs: str = "auto"
    reshape_transform: object = None
    image_shape: tuple[int, ...] | None = None  # (C, H, W) of the first image, which every image must share

    @property
    def count(self) -> int:
        """The number of images: a map-style Dataset's length (torch's ``Dataset`` type declares none)."""
        return len(cast(Sized, self.dataset))

    def engines(self, models: list[nn.Module]) -> list[CamEngine]:
        return [CamEngine(model, self.layers, self.cams, device=self.device, reshape_transform=self.reshape_transform)
                for model in models]

    def batches(self, ranges: Sequence[tuple[int, int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(images (B, C, H, W), labels (B,))`` for each range of dataset positions, in order, checked."""
        loader = DataLoader(self.dataset, batch_sampler=[list(range(start, stop)) for start, stop in ranges],
                            collate_fn=self.collate_fn)
        batches = iter(loader)
        for start, _ in ranges:
            try:
                images, labels = next(batches)[:2]
            except RuntimeError as error:
                if "stack expects each tensor to be equal size" not in str(error):
                    raise
                raise ValueError(f"The images of the batch starting at image {start} have different sizes "
                                 f"({str(error).splitlines()[0]}); resize them to one size in the dataset's "
                                 "transform, e.g. torchvision.transforms.Resize((224, 224)).") from None
            yield images, self._checked_labels(torch.as_tensor(labels), start)

    def _checked_labels(self, labels: torch.Tensor, start: int) -> torch.Tensor:
        """``labels (B,)`` must be class indices >= 0 that the class names cover."""
        if labels.ndim != 1 or labels.dtype.is_floating_point:
            raise ValueError(f"Labels must be integer class indices, one per image; got {labels.dtype} of shape "
                             f"{tuple(labels.shape)} at image {start}.")
        if int(labels.min()) < 0:
            raise ValueError(f"Label {int(labels.min())} at images {start}...: labels must be class indices >= 0, "
                             "also with PEConfig(target='reference') (accuracy and per-class scores read them); "
                             "drop unlabelled images or give them their class.")
        if self.class_names is not None and int(labels.max()) >= len(self.class_names):
            raise ValueError(f"Label {int(labels.max())} at images {start}... has no class name: class_names "
                             f"lists {len(self.class_names)} ({self.class_names}); give one name per class.")
        return labels

    def first_image(self) -> torch.Tensor:
        """The dataset's first image ``(1, C, H, W)``, checked: every other image must have its size."""
        images, _ = next(self.batches([(0, 1)]))
        check_images(images)
        return images

    def check_models(self, engines: list[CamEngine], image: torch.Tensor) -> None:
        """Every model must run on ``image (1, C, H, W)`` and give as many classes as the reference, as
        ``outputs`` says (logits or probabilities)."""
        with _entered(engines):
            _check_outputs(engines, list(self.models), image, self.outputs)

    def data_pass(self, ranges: Sequence[tuple[int, int]]) -> _DataSeen:
        """One pass over the data without the models: the hash of every image, and the digests."""
        batch_hashes, label_hash = [], hashlib.sha256()
        for images, labels in self.batches(ranges):
            batch_hashes.append(image_hashes(images))
            label_hash.update(labels.to(torch.int64).numpy().tobytes())
        hashes = np.concatenate(batch_hashes)
        return _DataSeen(hashes, sequence_digest(hashes), label_hash.hexdigest()[:16])

    def first_chunk(self, engines: list[CamEngine]) -> xr.Dataset:
        """The results of the first image alone: the shapes and dtypes a store is made from."""
        (_, chunk), = self.run(engines, [(0, 1)])
        return chunk

    def run(self, engines: list[CamEngine], ranges: Sequence[tuple[int, int]],
            after_each: Callable[[], None] = lambda: None) -> Iterator[tuple[int, xr.Dataset]]:
        """``(start, chunk)`` of each range: the results of its images as a Dataset."""
        masks = _dataset_attribute(self.dataset, "masks")
        with _entered(engines):
            for (start, stop), (images, labels) in zip(ranges, self.batches(ranges)):
                if tuple(images.shape[1:]) != self.image_shape:
                    raise ValueError(f"All images must have one size: got {tuple(images.shape[1:])} at image "
                                     f"{start}, but the first is {self.image_shape}. Resize them in the "
                                     "dataset's transform.")
                arrays = _evaluate_batch(engines, images, labels, self.config, self.sp2ps_config,
                                         None if masks is None else masks[start:stop], self.outputs)
                arrays[schema.INPUT] = _display_images(images)
                yield start, self._chunk(arrays, start)
                after_each()

    def _chunk(self, arrays: dict[str, torch.Tensor], start: int) -> xr.Dataset:
        """One batch's results as a Dataset over ``image`` positions ``start ...``."""
        arrays[schema.HEATMAP] = _stored_maps(arrays[schema.HEATMAP], self.heatmap_size, self.heatmap_dtype)
        arrays[schema.INPUT] = _stored_maps(arrays[schema.INPUT], self.heatmap_size, "uint8")
        labels = arrays.pop(schema.LABEL).cpu().numpy()
        positions = np.arange(start, start + len(labels))
        names = [str(self.class_names[label]) if self.class_names else str(label) for label in labels]
        return xr.Dataset(
            {name: (_DIMS.get(name, schema.SCORE_DIMS), values.cpu().numpy()) for name, values in arrays.items()},
            coords={schema.MODEL: list(self.models), schema.LAYER: list(self.layers),
                    schema.CAM: list(self.cams), schema.IMAGE: positions,
                    schema.LABEL: (schema.IMAGE, labels),
                    schema.CLASS_NAME: (schema.IMAGE, np.array(names, dtype=f"<U{self.name_width}")),
                    schema.SOURCE_INDEX: (schema.IMAGE, positions)})

    @property
    def name_width(self) -> int:
        """Width of the fixed-length class-name strings (int64 labels print in at most 20)."""
        return max(len(str(name)) for name in self.class_names) if self.class_names else 20


_DIMS = {schema.HEATMAP: schema.HEATMAP_DIMS, schema.INPUT: schema.INPUT_DIMS,
         schema.PROB: schema.OUTPUT_DIMS, schema.PRED: schema.OUTPUT_DIMS}


class _entered:
    """Enter every engine (models prepared once for the whole run) and always exit them all."""

    def __init__(self, engines: list[CamEngine]):
        self.engines = engines

    def __enter__(self):
        for count, engine in enumerate(self.engines):
            try:
                engine.__enter__()
            except BaseException:
                for entered in reversed(self.engines[:count]):
                    entered.__exit__(None, None, None)
                raise

    def __exit__(self, *exc_info):
        for engine in reversed(self.engines):  # last in, first out: one model passed twice ends as found
            engine.__exit__(*exc_info)


def _check_outputs(engines: list[CamEngine], names: list[str], image: torch.Tensor, outputs: str) -> None:
    """Every model runs on ``image (1, C, H, W)``, returns ``(1, classes)`` with the reference's classes, and
    (``outputs="auto"``) logits, not probabilities."""
    with torch.no_grad():
        results = [_run_once(engine, name, image) for engine, name in zip(engines, names)]
    for output in results:
        check_logits(output, len(image))
    counts = [output.shape[-1] for output in results]
    wrong = {name: count for name, count in zip(names, counts) if count != counts[0]}
    if wrong:
        raise ValueError(f"Candidates must have the reference's {counts[0]} classes, but {wrong} differ. "
                         "Keep the classifier's output layer when pruning (pescore_nb.prune does).")
    if outputs != "auto":
        return
    for name, output in zip(names, results):
        output = output.float()
        if (output >= 0).all() and torch.allclose(output.sum(dim=1), torch.ones(len(output)), atol=1e-4):
            raise ValueError(f"The {name} model returns probabilities (its outputs are >= 0 and sum to 1: a softmax "
                             "is applied already); a second softmax would flatten every confidence. Remove the "
                             "final softmax so the model returns logits, or pass outputs='probabilities'.")
        if ((output >= 0) & (output <= 1)).all():
            warnings.warn(f"The {name} model's outputs all lie in [0, 1]: if they are probabilities (a sigmoid at "
                          "the end), pass outputs='probabilities'; logits of an untrained model can look like this "
                          "too, then ignore this warning.", UserWarning, stacklevel=4)


def _run_once(engine: CamEngine, name: str, image: torch.Tensor) -> torch.Tensor:
    """The model's output for ``image (1, C, H, W)``; a model that cannot take it gets an error naming the fix."""
    try:
        return engine.model(image.to(engine.device))
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        if "channels" in first:
            raise ValueError(f"The {name} model cannot take images of {image.shape[1]} channel(s) ({first}); "
                             "convert the images in the dataset's transform, e.g. "
                             "torchvision.transforms.Grayscale(num_output_channels=3) for an RGB model.") from None
        raise ValueError(f"The {name} model could not run on an image of shape {tuple(image.shape[1:])} ({first}); "
                         "give images of the size and channels the model was trained on.") from None


def _evaluate_batch(engines: list[CamEngine], images: torch.Tensor, labels: torch.Tensor, config: PEConfig,
                    sp2ps_config: Sp2PSConfig | None = None, masks: torch.Tensor | None = None,
                    outputs: str = "auto") -> dict[str, torch.Tensor]:
    """One batch of N images: CAMs of every model, then every score, on the engines' device.

    Returns ``heatmap (models, layers, cams, N, H, W)``, ``prob``/``pred (models, N)``, the scores
    ``(models, layers, cams, N)`` and ``label (N,)``.
    """
    targets = labels if config.target == "label" else None  # None: the reference's predictions
    reference = engines[0].compute(images, targets)
    targets = reference.targets if targets is None else targets
    scorer = _ReferenceScores(reference, config, sp2ps_config, outputs)
    per_model = [scorer.scores(reference, masks)]
    for engine in engines[1:]:
        per_model.append(scorer.scores(engine.compute(images, targets), masks))
    arrays = {name: torch.stack([values[name] for values in per_model]) for name in per_model[0]}
    arrays[schema.LABEL] = labels
    return arrays


class _ReferenceScores:
    """The scores of each model's output against one batch's reference output. What depends on the
    reference alone (its probabilities, SSIM moments, IoU masks, spectra) is made once per batch."""

    def __init__(self, reference: CamOutput, config: PEConfig, sp2ps_config: Sp2PSConfig | None, outputs: str):
        self.reference, self.config, self.outputs = reference, config, outputs
        self.prob = _target_prob(reference, outputs)
        self.ssim = SSIMReference(reference.heatmaps, config)
        self.iou = IoUReference(reference.heatmaps, config.iou_threshold)
        self.sp2ps = None if sp2ps_config is None else Sp2PSReference(reference.heatmaps, sp2ps_config)
        self.same_ssim = sp2ps_config is not None and sp2ps_config.ssim_parameters() == config.ssim_parameters()

    def scores(self, output: CamOutput, masks: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``heatmap (layers, cams, N, H, W)``, ``prob``/``pred (N,)`` and the scores ``(layers, cams, N)``
        of one model's output."""
        prob = _target_prob(output, self.outputs)
        scores = {}
        if output is self.reference:  # every score of the reference with itself is exactly 1: skip the work
            ssim_values = iou_values = torch.ones(output.heatmaps.shape[:3], device=prob.device)
            if self.sp2ps is not None:
                scores[schema.SP2PS] = ssim_values
        else:
            ssim_values = self.ssim.compare(output.heatmaps)
            iou_values = self.iou.compare(output.heatmaps)
            if self.sp2ps is not None:
                scores[schema.SP2PS] = self.sp2ps.compare(output.heatmaps, ssim_values if self.same_ssim else None)
        conf_values = confidence(self.prob, prob).expand_as(ssim_values)
        if masks is not None:
            scores[schema.ENERGY_IN_MASK] = _energy_in_mask(output.heatmaps, masks)
        return {**scores, schema.HEATMAP: output.heatmaps, schema.PROB: prob, schema.PRED: output.logits.argmax(dim=1),
                schema.SSIM: ssim_values, schema.IOU: iou_values, schema.CONF: conf_values,
                schema.PE: combine(ssim_values, iou_values, conf_values, self.config.combine),
                schema.DEGENERATE: output.degenerate | self.reference.degenerate}


def _target_prob(output: CamOutput, outputs: str) -> torch.Tensor:
    """Probability of the explained class ``(N,)``: the softmax of logits, or the output itself when the
    model returns probabilities."""
    values = output.logits.float()
    probabilities = values if outputs == "probabilities" else values.softmax(dim=1)
    return probabilities.gather(1, output.targets[:, None])[:, 0]


def _energy_in_mask(heatmaps: torch.Tensor, masks) -> torch.Tensor:
    """Fraction of each map's energy inside its object mask: ``(..., N, H, W)`` -> ``(..., N)``; 0 for empty maps."""
    masks = torch.as_tensor(masks, dtype=torch.bool, device=heatmaps.device)
    if masks.shape[-2:] != heatmaps.shape[-2:]:
        raise ValueError(f"The data's masks are {tuple(masks.shape[-2:])} but the images "
                         f"{tuple(heatmaps.shape[-2:])}; masks must have the images' height and width.")
    total = heatmaps.sum(dim=(-2, -1), dtype=torch.float64)
    inside = (heatmaps * masks).sum(dim=(-2, -1), dtype=torch.float64)
    return torch.where(total > 0, inside / total.clamp(min=1e-300), torch.zeros_like(total)).float()


def _display_images(images: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W)`` min-max scaled per image to [0, 255] ``(N, C, H, W)``, for display only."""
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low).clamp(min=1e-12) * 255


def _stored_maps(maps: torch.Tensor, size: tuple[int, int] | None, dtype: str) -> torch.Tensor:
    """Maps ``(..., H, W)`` resized (antialiased bilinear) to ``size`` and cast for storage."""
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        flat = maps.reshape(-1, 1, *maps.shape[-2:]).float()
        maps = F.interpolate(flat, size=size, mode="bilinear", antialias=True,
                             align_corners=False).reshape(*maps.shape[:-2], *size)
    if dtype == "uint8":
        return maps.round().clamp(0, 255).to(torch.uint8)
    return maps.to(getattr(torch, dtype))


def _model_info(model: nn.Module, example: torch.Tensor, is_reference: bool, images_digest: str) -> dict:
    """role, ratio, pruner, params, MACs and provenance of one model: from its ``pescore_pruning``
    metadata (see :mod:`pescore_nb.prune`), else counted on ``example (1, C, H, W)``."""
    meta = dict(getattr(model, schema.PRUNING_ATTRIBUTE, None) or {})
    if schema.PARAMS not in meta or schema.MACS not in meta:
        import torch_pruning

        device = next(model.parameters()).device
        with torch.no_grad():
            macs, params = torch_pruning.utils.count_ops_and_params(model, example.to(device))
        meta.setdefault(schema.PARAMS, params)
        meta.setdefault(schema.MACS, macs)
    if is_reference:
        role, default_ratio, default_pruner = schema.REFERENCE, 0.0, schema.UNPRUNED
    else:
        role, default_ratio, default_pruner = meta.get(schema.ROLE, schema.CANDIDATE), math.nan, schema.UNKNOWN_PRUNER
    if role not in (schema.CANDIDATE, schema.CONTROL) and not is_reference:
        raise ValueError(f"A candidate's {schema.PRUNING_ATTRIBUTE}['role'] must be '{schema.CANDIDATE}' or "
                         f"'{schema.CONTROL}', got {role!r}; the reference is the first argument of evaluate.")
    seed = schema.NO_SEED if is_reference else meta.get(schema.SEED, schema.NO_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < schema.NO_SEED:
        raise ValueError(f"A candidate's {schema.PRUNING_ATTRIBUTE}['{schema.SEED}'] must be its fine-tuning seed, "
                         f"an integer >= 0 (or {schema.NO_SEED} for none), got {seed!r}.")
    return {schema.ROLE: role, schema.RATIO: float(meta.get(schema.RATIO, default_ratio)),
            schema.PRUNER: str(meta.get(schema.PRUNER, default_pruner)), schema.SEED: seed,
            schema.PARAMS: int(meta[schema.PARAMS]), schema.MACS: int(meta[schema.MACS]),
            schema.PROVENANCE: json.dumps(meta.get(schema.PROVENANCE, {}), sort_keys=True),
            schema.IMAGES_DIGEST: images_digest}


def _model_coords(info: list[dict]) -> dict:
    return {key: (schema.MODEL, [model[key] for model in info])
            for key in (schema.ROLE, schema.RATIO, schema.PRUNER, schema.SEED, schema.PARAMS, schema.MACS,
                        schema.PROVENANCE, schema.IMAGES_DIGEST)}


def _accuracy(ds: xr.Dataset) -> xr.DataArray:
    """Share of images each model classifies as labelled: ``(model,)``."""
    return (ds[schema.PRED] == ds[schema.LABEL]).mean(schema.IMAGE)


def _finish(ds: xr.Dataset, info: list[dict], attrs: dict, accuracy: np.ndarray) -> xr.Dataset:
    """Add the ``model`` coordinates (``accuracy (model,)`` given) and the attrs."""
    ds = ds.assign_coords({**_model_coords(info), schema.ACCURACY: (schema.MODEL, accuracy.astype(np.float64))})
    ds.attrs.update(attrs)
    return ds


def _attrs(job: _Job, reference_name: str, example: torch.Tensor, allow_overlap: bool,
           overlaps: dict[str, int]) -> dict:
    from importlib.metadata import version

    from . import __version__

    attrs = {schema.SCHEMA_VERSION_ATTRIBUTE: schema.SCHEMA_VERSION,
             job.config.attribute: job.config.to_json(), "reference_name": reference_name,
             "versions": json.dumps({"pescore_nb": __version__, **{package: version(package) for package in
                                     ("torch", "torchvision", "grad-cam", "xarray", "numpy")}}),
             "input_height": int(example.shape[-2]), "input_width": int(example.shape[-1]),
             "outputs": job.outputs, "allow_overlap": int(allow_overlap), "training_overlaps": json.dumps(overlaps)}
    if job.sp2ps_config is not None:
        attrs[job.sp2ps_config.attribute] = job.sp2ps_config.to_json()
    dataset_name = _dataset_attribute(job.dataset, "name")
    if isinstance(dataset_name, str) and dataset_name:
        attrs["dataset_name"] = dataset_name
    return attrs


def _template(probe: xr.Dataset, count: int, batch_size: int, info: list[dict], attrs: dict) -> xr.Dataset:
    """A lazy, all-zero Dataset shaped like ``count`` images of ``probe``, chunked by batch along ``image``."""
    import dask.array

    def empty(variable: xr.DataArray):
        shape = tuple(count if dim == schema.IMAGE else size for dim, size in variable.sizes.items())
        chunks = tuple(batch_size if dim == schema.IMAGE else size for dim, size in variable.sizes.items())
        return variable.dims, dask.array.zeros(shape, dtype=variable.dtype, chunks=chunks)

    image_coords = {name: empty(probe[name]) for name in (schema.LABEL, schema.CLASS_NAME, schema.SOURCE_INDEX)}
    template = xr.Dataset({name: empty(variable) for name, variable in probe.data_vars.items()},
                          coords={**{name: probe[name] for name in (schema.MODEL, schema.LAYER, schema.CAM)},
                                  schema.IMAGE: np.arange(count), **image_coords})
    return _finish(template, info, attrs, np.full(len(info), np.nan))  # accuracy is written last


def _digest(tensors: Iterable[torch.Tensor]) -> str:
    """sha256 (16 hex digits) of the tensors' bytes, in order."""
    hasher = hashlib.sha256()
    for tensor in tensors:
        hasher.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()[:16]


def _run_arguments(job: _Job, engines: list[CamEngine], batch_size: int, seen: _DataSeen) -> dict:
    """What a store's content depends on, as short strings: a resumed run must match every one.

    The data enters by digests of every image, every label and the class names, so changed or
    relabelled data is refused by name.
    """
    return {"models": json.dumps(list(job.models)),
            "weights": json.dumps([_digest(engine.model.state_dict().values()) for engine in engines]),
            "layers": json.dumps(job.layers), "cams": json.dumps(job.cams),
            "config": job.config.to_json(), "sp2ps_config": "none" if job.sp2ps_config is None else
            job.sp2ps_config.to_json(), "batch_size": str(batch_size), "images": str(job.count),
            "image_digest": seen.images_digest, "label_digest": seen.labels_digest,
            "class_names": json.dumps(job.class_names), "heatmap_size": json.dumps(job.heatmap_size),
            "heatmap_dtype": job.heatmap_dtype, "outputs": job.outputs,
            "reshape_transforms": json.dumps(sorted({repr(transform) for engine in engines
                                                     for transform in engine.transforms.values()}))}


_WORKER_ENGINES: dict[int, list[CamEngine]] = {}


def _run_on_worker(job: _Job, ranges: list[tuple[int, int]], store: str) -> int:
    """Evaluate ``ranges`` on a dask worker and write them to the store; the models are built once per worker."""
    key = id(job)
    if key not in _WORKER_ENGINES:
        _WORKER_ENGINES.clear()
        _WORKER_ENGINES[key] = job.engines(_built(job.models))
    run = ZarrRun(store)
    for start, chunk in job.run(_WORKER_ENGINES[key], ranges):
        run.write(chunk, start)
    return len(ranges)


def _run_distributed(client, job: _Job, todo: list[tuple[int, int]], store: str, bar) -> None:
    from distributed import as_completed

    [shared_job] = client.scatter([job], broadcast=True)
    futures = [client.submit(_run_on_worker, shared_job, [batch], store, pure=False) for batch in todo]
    for future in as_completed(futures):
        bar.update(future.result())
