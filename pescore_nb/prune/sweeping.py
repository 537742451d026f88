""":func:`sweep`: check the arguments, plan one job per model, run the jobs here or in worker processes."""

from __future__ import annotations

import hashlib
import multiprocessing
import numbers
import pickle
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import TypeGuard

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from pescore_nb.digests import TRAINING_HASHES, image_hashes

from pescore_nb.schema import CANDIDATE, CONTROL, CONTROL_FINETUNE, UNPRUNED, seeded_name
from pescore_nb.senpis import class_balanced_sample

from .attention import refuse_unprunable
from .finetune import Finetune
from .jobs import Job, PruningSample, SweepInputs, make_model, make_model_in_worker, start_worker, unsendable
from .pruning import DATA_PRUNERS, PRUNERS, layer_names, output_layer, refuse_for_senpis, trace


def sweep(
    model: nn.Module,
    example_input: torch.Tensor,
    ratios: Sequence[float],
    pruner: str | Sequence[str] = "l2",
    seed: int = 0,
    seeds: int | Sequence[int] | None = None,
    finetune: Finetune | None = None,
    data: Dataset | None = None,
    samples_per_class: int = 5,
    controls: bool = True,
    ignored_layers: Sequence[str | nn.Module] | None = None,
    progress: bool = False,
    workers: int = 1,
) -> dict[str, nn.Module]:
    """Prune a copy of ``model`` with each pruner at each ratio, once per seed; ``model`` itself is never
    modified.

    Args:
        model: a classifier mapping ``(N, C, H, W)`` images to ``(N, num_classes)`` logits.
        example_input: a batch ``(N, C, H, W)`` on the model's device, used to trace the
            network and count MACs (for one image of this size).
        ratios: fractions in ``[0, 1)`` (a list, tuple or 1-D array); what they remove depends
            on the pruner (see the module docstring). ``0`` gives an unpruned copy (still
            fine-tuned when ``finetune`` is set).
        pruner: one of :data:`PRUNERS`, or a list of them: every pruner at every ratio.
        seed: the seed (an integer >= 0) when ``seeds`` is ``None``, the first seed when it is a number.
        seeds: ``None`` (just ``seed``), a number ``n`` of seeds (``seed, ..., seed + n - 1``) or a list
            of distinct seeds. Every model is made once per seed, and its seed drives everything random
            in making it: the ``"random"`` channel choice, the class-balanced sample and fine-tuning
            (batch order, dropout, augmentation); the global RNG is left as it was.
        finetune: a :class:`Finetune`, applied to every copy after pruning (for
            ``"unstructured"`` the masks hold during fine-tuning, so pruned weights stay zero).
        data: a Dataset of ``(image, label, ...)`` items (e.g. the training split), from which
            ``"taylor"`` and ``"senpis"`` draw ``samples_per_class`` images of each class.
        samples_per_class: images of each class those pruners rank channels on.
        controls: with ``finetune``, also return ``"control:finetune"``, the unpruned model
            fine-tuned the same way (once per seed).
        ignored_layers: names (``"fc"``) or modules of ``model`` whose outputs are never pruned;
            ``None`` means the classifier's output layer, found automatically.
        progress: show a progress bar that advances as each model is made.
        workers: how many models to make at once, each in its own process; ``1`` makes them one
            after another in this process. Every model is the same whatever ``workers`` is.

    Returns:
        ``{"<pruner>@<ratio:.2f>": pruned copy}``, pruner by pruner in the order of ``ratios``,
        then the control; with several seeds, each name once per seed, in the order of ``seeds``:
        ``"l2@0.10/seed0"``, ``"l2@0.10/seed1"``, ..., ``"control:finetune/seed1"``. Each model is in
        eval mode and carries ``pescore_pruning`` (see the module docstring).
    """
    pruners = _check_pruners(pruner)
    ratios = _check_ratios(ratios)
    seeds = seed_list(seed, seeds)
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}; pass 1 to make the models in this "
                         "process, or the number of worker processes to make them in.")
    refuse_unprunable(model)
    logits, executed = trace(model, example_input)
    ignored = (
        [output_layer(executed, logits.shape[1])]
        if ignored_layers is None
        else layer_names(model, ignored_layers)
    )
    if "senpis" in pruners:
        refuse_for_senpis(model)
    inputs = SweepInputs(
        model=model, example_input=example_input, ignored=ignored, order=[name for name, _ in executed],
        finetune=finetune, finetune_digest=None if finetune is None else _digest(finetune.data),
        samples=_pruning_samples(pruners, data, samples_per_class, seeds, example_input.device),
    )
    jobs = _plan(pruners, ratios, seeds, control=finetune is not None and controls)
    with tqdm(total=len(jobs), desc="pruning", unit="model", disable=not progress) as bar:
        if workers == 1:
            made = []
            for job in jobs:
                made.append(make_model(inputs, job))
                bar.update()
        else:
            made = _make_in_workers(inputs, jobs, int(workers), bar)
    _remember_training_images(list(zip(jobs, made)), inputs)
    return {job.name: model for job, model in zip(jobs, made)}


def _remember_training_images(made: list[tuple[Job, nn.Module]], inputs: SweepInputs) -> None:
    """Give each model the 64-bit hashes ``(N,)`` of the images it was pruned (its seed's sample) or fine-tuned
    on (:data:`pescore_nb.digests.TRAINING_HASHES`), which :func:`pescore_nb.evaluate` refuses to score it on."""
    tuned = [] if inputs.finetune is None else [_dataset_hashes(inputs.finetune.data)]
    sampled = {seed: image_hashes(sample.images) for seed, sample in inputs.samples.items()}
    for job, model in made:
        seen = tuned + ([sampled[job.seed]] if job.pruner in DATA_PRUNERS else [])
        setattr(model, TRAINING_HASHES, np.unique(np.concatenate(seen)) if seen else np.zeros(0, dtype=np.uint64))


def seed_list(seed: int, seeds: int | Sequence[int] | None) -> list[int]:
    """The seeds of a sweep (see :func:`sweep`): ``[seed]``, ``seed .. seed + seeds - 1``, or ``seeds``."""
    if not _is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
    if seeds is None:
        return [int(seed)]
    if _is_integer(seeds):
        if seeds < 1:
            raise ValueError(f"seeds must be a number of seeds >= 1 or a list of seeds such as [0, 1, 2], "
                             f"got {seeds!r}.")
        return list(range(int(seed), int(seed) + int(seeds)))
    values = list(seeds) if isinstance(seeds, Iterable) and not isinstance(seeds, str) else []
    if not values or not all(_is_integer(value) and value >= 0 for value in values):
        raise ValueError(f"seeds must be a number of seeds >= 1 or a non-empty list of integer seeds >= 0 such "
                         f"as [0, 1, 2], got {seeds!r}.")
    if seed != 0:
        raise ValueError(f"seed={seed!r} and the list seeds={values!r} both name seeds; put every seed in the "
                         f"list, or pass seeds={len(values)} to count up from seed={seed!r}.")
    for i, value in enumerate(values):
        if value in values[:i]:
            raise ValueError(f"seed {value!r} is listed twice in seeds={values!r}; list each seed once.")
    return [int(value) for value in values]


def _is_integer(value: object) -> TypeGuard[int]:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _plan(pruners: list[str], ratios: list[float], seeds: list[int], control: bool) -> list[Job]:
    """One job per pruner, ratio and seed, then (``control``) one ``control:finetune`` per seed.

    With one seed the names are the pruner and ratio alone (``"l2@0.10"``), else they end with the
    seed (``"l2@0.10/seed0"``).
    """
    def named(name: str, seed: int) -> str:
        return seeded_name(name, seed) if len(seeds) > 1 else name

    jobs = [Job(named(f"{name}@{ratio:.2f}", seed), name, ratio, CANDIDATE, seed)
            for name in pruners for ratio in ratios for seed in seeds]
    if control:
        jobs += [Job(named(CONTROL_FINETUNE, seed), UNPRUNED, 0.0, CONTROL, seed) for seed in seeds]
    return jobs


def _make_in_workers(inputs: SweepInputs, jobs: list[Job], workers: int, bar: tqdm) -> list[nn.Module]:
    """``make_model(inputs, job)`` for every job, in up to ``workers`` spawned processes; in the order of ``jobs``.

    ``inputs`` is pickled once here (refused with a clear error if it cannot be) and loaded once per process.
    """
    try:
        pickled_inputs = pickle.dumps(inputs)
    except Exception as error:  # PicklingError, or TypeError/AttributeError for locks, lambdas, local classes
        raise ValueError(unsendable("cannot receive", error)) from None
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=start_worker, initargs=(pickled_inputs,)) as pool:
        futures = [pool.submit(make_model_in_worker, job) for job in jobs]
        try:
            for future in as_completed(futures):
                future.result()
                bar.update()
        except BrokenProcessPool:
            pool.shutdown(cancel_futures=True)
            raise RuntimeError(
                "A worker process of sweep(workers > 1) died. A worker imports the script that started it, so "
                "a script must call sweep under `if __name__ == \"__main__\":` (the worker's own error, printed "
                "above, then says 'bootstrapping phase'); a worker can also be killed for memory. Add the guard, "
                "or pass workers=1.") from None
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return [pickle.loads(future.result()) for future in futures]  # our own workers' bytes, made this call


def _check_pruners(pruner) -> list[str]:
    """``pruner`` as a list of distinct names from :data:`PRUNERS` (a string is one pruner)."""
    names = [pruner] if isinstance(pruner, str) or not isinstance(pruner, Iterable) else list(pruner)
    if not names:
        raise ValueError(
            f"pruner must be a pruner name or a non-empty list of them such as ['l2', 'senpis'], got {pruner!r}."
        )
    for name in names:
        if name not in PRUNERS:
            raise ValueError(f"Unknown pruner {name!r}; choose one of {', '.join(map(repr, PRUNERS))}.")
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"pruner {name!r} is listed twice in {names!r}; list each pruner once.")
    return names


def _check_ratios(ratios) -> list[float]:
    """Validate ``ratios``; return them as floats whose names ``"@<ratio:.2f>"`` are distinct."""
    values = list(ratios) if isinstance(ratios, Iterable) and not isinstance(ratios, str) else []
    if not values:
        raise ValueError(f"ratios must be a non-empty list of fractions such as [0.1, 0.3, 0.5], got {ratios!r}.")
    for ratio in values:
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= float(ratio) < 1:
            raise ValueError(
                f"Every pruning ratio must be a number in [0, 1), got {ratio!r} in {values!r}; "
                "0.3 removes 30% of the channels (or weights)."
            )
    names = [f"{ratio:.2f}" for ratio in values]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(
                f"Two ratios both round to {name} (names keep two decimals); "
                f"pass ratios that differ at two decimals, got {values!r}."
            )
    return [float(ratio) for ratio in values]


def _pruning_samples(pruners: list[str], data, samples_per_class: int, seeds: list[int],
                     device: torch.device) -> dict[int, PruningSample]:
    """The class-balanced sample of ``data`` drawn with each seed, on ``device``; ``{}`` when no pruner needs one."""
    needing = [name for name in pruners if name in DATA_PRUNERS]
    if not needing:
        return {}
    if data is None:
        raise ValueError(
            f"pruner {needing[0]!r} ranks channels on labelled images: pass data=<a Dataset of (image, label, ...) "
            f"items>, e.g. the training split; it uses samples_per_class={samples_per_class} images of each class."
        )
    samples = {}
    for seed in seeds:
        images, labels = class_balanced_sample(data, samples_per_class, seed)
        samples[seed] = PruningSample(images.to(device), labels.to(device), _digest(list(zip(images, labels))))
    return samples


def _dataset_hashes(data) -> np.ndarray:
    """The 64-bit hash of every image of ``data`` (a Dataset of ``(image (C, H, W), label, ...)``): ``(N,)``."""
    return np.array([image_hashes(data[i][0][None])[0] for i in range(len(data))], dtype=np.uint64)


def _digest(data) -> str:
    """First 16 hex digits of the sha256 of the images' bytes, in order, then the labels' as int64.

    ``data``: a Dataset (or sequence) of ``(image (C, H, W), label, ...)`` items.
    """
    sha, labels = hashlib.sha256(), []
    for i in range(len(data)):
        image, label, *_ = data[i]
        sha.update(image.detach().cpu().contiguous().numpy().tobytes())
        labels.append(int(label))
    sha.update(torch.tensor(labels, dtype=torch.int64).numpy().tobytes())
    return sha.hexdigest()[:16]
