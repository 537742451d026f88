"""One model of a sweep: what all its jobs share, and the job that makes one model (prune a copy,
fine-tune it, count it), run in this process or in a worker process of :func:`pescore_nb.prune.sweep`."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from pescore_nb.schema import MACS, PARAMS, PROVENANCE, PRUNER, PRUNING_ATTRIBUTE, RATIO, ROLE, SEED

from .finetune import Finetune, finetune_model
from .pruning import DATA_PRUNERS, prune_model, remove_masks


@dataclass(frozen=True)
class PruningSample:
    """The class-balanced sample that ``"taylor"`` and ``"senpis"`` rank channels on, for one seed:
    ``images`` ``(N, C, H, W)`` and ``labels`` ``(N,)`` on the model's device, and their ``digest``."""

    images: torch.Tensor
    labels: torch.Tensor
    digest: str


@dataclass(frozen=True)
class SweepInputs:
    """What every job of a sweep reads; sent once to each worker process.

    ``example_input`` ``(N, C, H, W)`` traces the network and counts MACs; ``ignored``: qualified names
    of the layers whose outputs are never pruned; ``order``: the Conv/Linear layers in forward order;
    ``samples``: the pruning sample of each seed (empty when no pruner needs one).
    """

    model: nn.Module
    example_input: torch.Tensor
    ignored: list[str]
    order: list[str]
    finetune: Finetune | None
    finetune_digest: str | None
    samples: dict[int, PruningSample]


@dataclass(frozen=True)
class Job:
    """One model to make: ``pruner`` at ``ratio`` with ``seed``, returned as ``name`` with ``role``."""

    name: str
    pruner: str
    ratio: float
    role: str
    seed: int


def make_model(inputs: SweepInputs, job: Job) -> nn.Module:
    """A copy of ``inputs.model`` pruned, fine-tuned and counted as ``job`` says, in eval mode, carrying
    ``pescore_pruning``. torch's CPU operations run on one thread meanwhile, so the weights do not
    depend on how many jobs run at once."""
    with _one_torch_thread():
        model = copy.deepcopy(inputs.model).eval()
        ignored = [model.get_submodule(name) for name in inputs.ignored]
        sample = inputs.samples[job.seed] if job.pruner in DATA_PRUNERS else None
        masked = prune_model(model, job.pruner, job.ratio, inputs.example_input, ignored, inputs.order, job.seed,
                             None if sample is None else (sample.images, sample.labels))
        finetune = inputs.finetune
        if finetune is not None:
            teacher = copy.deepcopy(inputs.model).eval().requires_grad_(False) if finetune.distill else None
            finetune_model(model, finetune, job.seed, teacher)
        remove_masks(model)
        device = next(model.parameters()).device  # fine-tuning may have moved it
        macs, params = tp.utils.count_ops_and_params(model, inputs.example_input[:1].to(device))
    provenance = {
        "pruning_seed": job.seed,
        "finetune": None if finetune is None else finetune.provenance(job.seed),
        "pruning_data_digest": None if sample is None else sample.digest,
        "finetune_data_digest": inputs.finetune_digest,
    }
    setattr(model, PRUNING_ATTRIBUTE, {PRUNER: job.pruner, RATIO: job.ratio, ROLE: job.role, SEED: job.seed,
                                       PARAMS: int(params) - masked, MACS: int(macs), PROVENANCE: provenance})
    return model


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch's CPU operations on one thread, then restore the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- in a worker process
_worker_inputs: SweepInputs | Exception | None = None  # what start_worker loaded, or why it could not


def start_worker(pickled_inputs: bytes) -> None:
    """Load the sweep's :class:`SweepInputs` once per worker process (``ProcessPoolExecutor``'s initializer).

    A failure is kept, not raised (which would only break the pool without a reason), for
    :func:`make_model_in_worker` to report.
    """
    global _worker_inputs
    try:
        _worker_inputs = pickle.loads(pickled_inputs)
    except Exception as error:  # e.g. the model's class lives in a notebook, which a new process cannot import
        _worker_inputs = error


def make_model_in_worker(job: Job) -> bytes:
    """:func:`make_model` on the inputs :func:`start_worker` loaded in this worker process, pickled here.

    Plain pickle bytes, not the module: a module sent back as it is would share each tensor through its
    own file descriptor, and a sweep of many models would run out of them (``Too many open files``).
    """
    if isinstance(_worker_inputs, Exception):
        raise ValueError(unsendable("could not load", _worker_inputs)) from None
    if _worker_inputs is None:
        raise RuntimeError("make_model_in_worker runs in a worker process started with start_worker.")
    return pickle.dumps(make_model(_worker_inputs, job))


def unsendable(what_failed: str, error: Exception) -> str:
    """The one-line error for a model or fine-tuning data that worker processes cannot receive."""
    reason = " ".join(f"{type(error).__name__}: {error}".split())
    return (f"workers > 1 makes the models in new processes, which {what_failed} the model or the fine-tuning "
            f"data ({reason}); define their classes in an importable module, not in a notebook or __main__, "
            "without lambdas (pescore_nb.data's datasets and the zoo's models can be sent), or pass workers=1.")
