"""`evaluate`: images -> CAMs of the reference and each candidate -> scores -> one labelled Dataset."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler
from tqdm.auto import tqdm

from . import schema
from .cam import CamEngine, CamOutput, check_images
from .metrics import PEConfig, combine, confidence, iou, ssim
from .sp2ps import Sp2PSConfig, sp2ps

SSIM_FIELDS = ("ssim_window", "ssim_sigma", "ssim_k1", "ssim_k2")


def evaluate(reference: nn.Module, candidates: Mapping[str, nn.Module], data: Dataset | DataLoader, *,
             layers: Sequence[str], methods: Sequence[str] = ("gradcam++",), batch_size: int = 32,
             device: str | torch.device | None = None, config: PEConfig = PEConfig(),
             class_names: Sequence[str] | None = None, sp2ps_config: Sp2PSConfig | None = Sp2PSConfig(),
             progress: bool = True) -> xr.Dataset:
    """PE-score of each candidate against the reference, for every layer, method and image.

    reference: the unpruned model; candidates: name -> pruned model (same layer names, same
    classes). data: a torch Dataset of ``(image (C, H, W), label)`` or a DataLoader over one
    (``shuffle=False``). layers: qualified module names present in every model. Returns the
    Dataset of ``PESCORE.md``: ``heatmap (model, layer, method, image, y, x)``, ``prob``/``pred
    (model, image)``, ``ssim``/``iou``/``conf``/``pe``/``degenerate (model, layer, method, image)``,
    ``sp2ps`` beside ``pe`` (skipped with ``sp2ps_config=None``), ``energy_in_mask`` when the data
    has ``masks (N, H, W)``, and ``input (image, channel, y, x)`` uint8 pictures for display.
    The models are left as found.
    """
    models = _named_models(reference, candidates)
    loader = _loader(data, batch_size)
    if len(loader.dataset) == 0:
        raise ValueError("The dataset is empty: evaluate needs at least one (image, label) pair.")
    masks = getattr(loader.dataset, "masks", None)
    engines = [CamEngine(model, layers, methods, device=device) for model in models.values()]
    chunks: list[dict[str, np.ndarray]] = []
    first_images, start = None, 0
    with _entered(engines):
        bar = tqdm(loader, desc="PE-score", unit="batch", disable=not progress)
        for images, labels in bar:
            if first_images is None:
                check_images(images)
                first_images = images[:1]
                _check_class_counts(engines, list(models), first_images)
            elif images.shape[1:] != first_images.shape[1:]:
                raise ValueError(f"All images must have one size: got {tuple(images.shape[1:])} after "
                                 f"{tuple(first_images.shape[1:])}. Resize them in the dataset's transform.")
            indices = torch.arange(start, start + len(images))
            start += len(images)
            chunk = _evaluate_batch(engines, images, torch.as_tensor(labels), config, sp2ps_config)
            if masks is not None:
                chunk[schema.ENERGY_IN_MASK] = _energy_in_mask(chunk[schema.HEATMAP], masks[indices])
            chunk[schema.INDEX] = indices.numpy()
            chunk[schema.INPUT] = _display_images(images)
            chunks.append(chunk)
    arrays = {name: np.concatenate([chunk[name] for chunk in chunks], axis=_image_axis(name))
              for name in chunks[0]}
    names = class_names or getattr(loader.dataset, "classes", None)
    info = [_model_info(model, first_images, name == schema.REFERENCE) for name, model in models.items()]
    ds = _to_dataset(arrays, list(models), info, layers, methods, names, config, reference)
    if sp2ps_config is not None:
        ds.attrs[sp2ps_config.attribute] = sp2ps_config.to_json()
    return ds


def _named_models(reference: nn.Module, candidates: Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    if not isinstance(candidates, Mapping):
        raise TypeError("candidates must map a name to a model, e.g. {'l2@0.30': pruned_model}.")
    if schema.REFERENCE in candidates:
        raise ValueError(f"'{schema.REFERENCE}' names the reference model; give the candidate another name.")
    return {schema.REFERENCE: reference, **candidates}


def _loader(data: Dataset | DataLoader, batch_size: int) -> DataLoader:
    if isinstance(data, DataLoader):
        if not isinstance(data.sampler, SequentialSampler):
            raise ValueError("The DataLoader must iterate in order (shuffle=False, no sampler) so each "
                             "result keeps its image's index; pass the Dataset itself to let evaluate batch it.")
        return data
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    return DataLoader(data, batch_size=batch_size, shuffle=False)


class _entered:
    """Enter every engine (models prepared once for the whole run) and always exit them all."""

    def __init__(self, engines: list[CamEngine]):
        self.engines = engines

    def __enter__(self):
        for count, engine in enumerate(self.engines):
            try:
                engine.__enter__()
            except BaseException:
                for entered in self.engines[:count]:
                    entered.__exit__(None, None, None)
                raise

    def __exit__(self, *exc_info):
        for engine in self.engines:
            engine.__exit__(*exc_info)


def _check_class_counts(engines: list[CamEngine], names: list[str], image: torch.Tensor) -> None:
    with torch.no_grad():
        counts = [engine.model(image.to(engine.device)).shape[-1] for engine in engines]
    wrong = {name: count for name, count in zip(names, counts) if count != counts[0]}
    if wrong:
        raise ValueError(f"Candidates must have the reference's {counts[0]} classes, but {wrong} differ. "
                         "Keep the classifier's output layer when pruning (pescore_nb.prune does).")


def _evaluate_batch(engines: list[CamEngine], images: torch.Tensor, labels: torch.Tensor, config: PEConfig,
                    sp2ps_config: Sp2PSConfig | None = None) -> dict[str, np.ndarray]:
    """One batch of N images: CAMs of every model, then every score, as numpy arrays."""
    reference = engines[0].compute(images, labels if config.target == "label" else None)
    outputs = [reference] + [engine.compute(images, reference.targets) for engine in engines[1:]]
    ref_prob = _target_prob(reference)
    per_model = []
    for output in outputs:
        prob = _target_prob(output)
        if output is reference:  # SSIM and IoU of a map with itself are exactly 1: skip the work
            ssim_values = iou_values = torch.ones(output.heatmaps.shape[:3], device=prob.device)
        else:
            ssim_values = ssim(reference.heatmaps, output.heatmaps, config)
            iou_values = iou(reference.heatmaps, output.heatmaps, config.iou_threshold)
        conf_values = confidence(ref_prob, prob).expand_as(ssim_values)
        scores = {}
        if sp2ps_config is not None:
            same_ssim = sp2ps_config.ssim_config == dataclasses.replace(
                PEConfig(), **{field: getattr(config, field) for field in SSIM_FIELDS})
            scores[schema.SP2PS] = (torch.ones_like(ssim_values) if output is reference else
                                    sp2ps(reference.heatmaps, output.heatmaps, sp2ps_config,
                                          spatial=ssim_values if same_ssim else None))
        per_model.append({
            **scores, schema.HEATMAP: output.heatmaps, schema.PROB: prob, schema.PRED: output.logits.argmax(dim=1),
            schema.SSIM: ssim_values, schema.IOU: iou_values, schema.CONF: conf_values,
            schema.PE: combine(ssim_values, iou_values, conf_values, config.combine),
            schema.DEGENERATE: output.degenerate | reference.degenerate})
    chunk = {name: torch.stack([values[name] for values in per_model]).cpu().numpy() for name in per_model[0]}
    chunk[schema.LABEL] = labels.numpy()
    return chunk


def _target_prob(output: CamOutput) -> torch.Tensor:
    """Softmax probability of the explained class ``(N,)``."""
    return output.logits.float().softmax(dim=1).gather(1, output.targets[:, None])[:, 0]


def _energy_in_mask(heatmaps: np.ndarray, masks: torch.Tensor) -> np.ndarray:
    """Fraction of each map's energy inside its object mask: heatmaps ``(..., N, H, W)`` -> ``(..., N)``."""
    masks = np.asarray(masks, dtype=bool)
    if masks.shape[-2:] != heatmaps.shape[-2:]:
        raise ValueError(f"The data's masks are {masks.shape[-2:]} but the images {heatmaps.shape[-2:]}; "
                         "masks must have the images' height and width.")
    total = heatmaps.sum(axis=(-2, -1), dtype=np.float64)
    inside = (heatmaps * masks).sum(axis=(-2, -1), dtype=np.float64)
    return np.where(total > 0, inside / np.maximum(total, 1e-300), 0.0).astype(np.float32)


def _display_images(images: torch.Tensor) -> np.ndarray:
    """Images ``(N, C, H, W)`` min-max scaled per image to uint8 ``(N, C, H, W)``, for display only."""
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return ((images - low) / (high - low).clamp(min=1e-12) * 255).round().to(torch.uint8).numpy()


def _image_axis(name: str) -> int:
    if name in (schema.LABEL, schema.INDEX, schema.INPUT):
        return 0
    return 1 if name in (schema.PROB, schema.PRED) else 3


def _model_info(model: nn.Module, example: torch.Tensor, is_reference: bool) -> dict:
    """ratio, pruner, params, MACs of one model: from ``pescore_pruning`` metadata, else counted."""
    meta = dict(getattr(model, schema.PRUNING_ATTRIBUTE, None) or {})
    if "params" not in meta or "macs" not in meta:
        import torch_pruning

        device = next(model.parameters()).device
        with torch.no_grad():
            macs, params = torch_pruning.utils.count_ops_and_params(model, example.to(device))
        meta.setdefault("params", params)
        meta.setdefault("macs", macs)
    return {schema.RATIO: float(meta.get("ratio", 0.0 if is_reference else math.nan)),
            schema.PRUNER: str(meta.get("pruner", schema.UNPRUNED if is_reference else "unknown")),
            schema.PARAMS: int(meta["params"]), schema.MACS: int(meta["macs"])}


def _versions() -> str:
    from importlib.metadata import version

    from . import __version__

    return json.dumps({"pescore_nb": __version__, **{package: version(package) for package in
                       ("torch", "torchvision", "grad-cam", "xarray", "numpy")}})


def _to_dataset(arrays: dict[str, np.ndarray], model_names: list[str], info: list[dict], layers, methods,
                class_names, config: PEConfig, reference: nn.Module) -> xr.Dataset:
    labels = arrays.pop(schema.LABEL)
    indices = arrays.pop(schema.INDEX)
    dims = {name: schema.HEATMAP_DIMS if name == schema.HEATMAP else schema.INPUT_DIMS if name == schema.INPUT
            else schema.OUTPUT_DIMS if name in (schema.PROB, schema.PRED) else schema.SCORE_DIMS for name in arrays}
    accuracy = (arrays[schema.PRED] == labels[None, :]).mean(axis=1)
    names = [str(class_names[label]) if class_names is not None else str(label) for label in labels]
    height, width = arrays[schema.HEATMAP].shape[-2:]
    return xr.Dataset(
        {name: (dims[name], values) for name, values in arrays.items()},
        coords={schema.MODEL: model_names, schema.LAYER: list(layers), schema.METHOD: [m.lower() for m in methods],
                schema.IMAGE: np.arange(len(labels)),
                **{key: (schema.MODEL, [model[key] for model in info])
                   for key in (schema.RATIO, schema.PRUNER, schema.PARAMS, schema.MACS)},
                schema.ACCURACY: (schema.MODEL, accuracy),
                schema.LABEL: (schema.IMAGE, labels), schema.CLASS_NAME: (schema.IMAGE, names),
                schema.INDEX: (schema.IMAGE, indices)},
        attrs={"pe_config": config.to_json(), "reference_name": type(reference).__name__,
               "versions": _versions(), "input_height": int(height), "input_width": int(width)})
