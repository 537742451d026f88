"""Pruning sweeps: the candidate models that PE-score compares with their unpruned reference.

:func:`sweep` copies a model once per pruner, ratio and seed and prunes each copy::

    candidates = sweep(model, torch.randn(1, 3, 64, 64), [0.1, 0.3, 0.5], pruner=["l2", "senpis"],
                       data=train_split, finetune=Finetune(train_split))
    candidates["senpis@0.30"]          # an nn.Module, in eval mode
    candidates["control:finetune"]     # the unpruned model, fine-tuned like the candidates
    candidates["l2@0.30"].pescore_pruning
    # {"pruner": "l2", "ratio": 0.3, "role": "candidate", "seed": 0, "params": 2801450, "macs": 39753226,
    #  "provenance": {"pruning_seed": 0, "finetune": {"epochs": 1, "lr": 0.001, "batch_size": 32,
    #                 "seed": 0, "images": 1500, "schedule": "cosine"}, "pruning_data_digest": None,
    #                 "finetune_data_digest": "9f86d081884c7d65"}}

    several = sweep(model, example, [0.3], finetune=Finetune(train_split, schedule="cosine"), seeds=3, workers=3)
    list(several)  # ["l2@0.30/seed0", "l2@0.30/seed1", "l2@0.30/seed2",
                   #  "control:finetune/seed0", "control:finetune/seed1", "control:finetune/seed2"]

The modules: :mod:`~pescore_nb.prune.importance` (how the weight-based pruners rank channels),
:mod:`~pescore_nb.prune.pruning` (pruning one copy), :mod:`~pescore_nb.prune.finetune` (the
:class:`Finetune` recipe and its training loop), :mod:`~pescore_nb.prune.jobs` (making one model)
and :mod:`~pescore_nb.prune.sweeping` (:func:`sweep`).

Pruners (:data:`PRUNERS`) and what ``ratio`` means for each:

- ``"l1"``, ``"l2"``, ``"random"``, ``"taylor"`` and ``"senpis"`` are *structured*: torch-pruning
  removes whole output channels, so the pruned model really is smaller and faster, and every
  module keeps its qualified name (``layer1.0.conv1`` stays ``layer1.0.conv1``, only narrower).
  ``ratio`` is the fraction of output channels removed from every prunable Conv/Linear layer
  (local, layer-wise pruning), counted by one rule for all five: a layer with ``C`` output channels
  keeps ``max(1, int(C * (1 - ratio)))`` of them — a layer is never emptied. Channels tied
  together (residual additions, depthwise convolutions) form one torch-pruning group and are
  removed together. The pruners differ in how they rank a layer's channels (the lowest go):

  - ``"l1"``, ``"l2"`` (filter norm, the PE-score paper's "Weight" method): the p-norm of the
    channel's filter (``p = 1`` or ``2``); for tied channels, the mean of the tied filters' norms.
  - ``"random"``: uniform random numbers drawn from a generator seeded with the model's seed.
  - ``"taylor"``: torch-pruning's first-order Taylor importance (``GroupTaylorImportance``:
    ``|weight * gradient|`` summed over each channel's weights, averaged over the group), with the
    gradients of the cross-entropy on the class-balanced sample of ``data`` (see below).
  - ``"senpis"``: SeNPIS-Faster (:mod:`pescore_nb.senpis`): how much zeroing a channel's filter
    changes each class's cross-entropy on the class-balanced sample. The other pruners rank every
    layer on the unpruned network, then prune; ``"senpis"`` prunes the layers one after another
    in forward order, ranking each on the network already pruned before it, ties broken by
    channel index (the lower index goes first).

  ``"taylor"`` and ``"senpis"`` need ``data=``, a Dataset of ``(image, label, ...)`` items (e.g.
  the training split): they rank on ``samples_per_class`` images of each of its classes, drawn
  with a generator seeded with the model's seed (:func:`pescore_nb.senpis.class_balanced_sample`):
  one sample per seed, the same for every ratio and both pruners.
- ``"unstructured"`` zeroes single weights: global magnitude pruning
  (:func:`torch.nn.utils.prune.global_unstructured` with ``L1Unstructured``) over the weight
  tensors of every prunable Conv/Linear layer together, made permanent with
  :func:`torch.nn.utils.prune.remove`. ``ratio`` is the fraction of those weights set to zero
  (``round(ratio * n_weights)`` of them); biases and normalisation layers are untouched.

Vision transformers (torchvision's ``VisionTransformer``, :mod:`~pescore_nb.prune.attention`): the
structured pruners remove ``ratio`` of the residual stream (``hidden_dim``: the patch embedding, the
class token, the position embedding, every layer norm and attention) as ``num_heads`` groups, the same
positions from every head, so each head keeps ``max(1, int(head_dim * (1 - ratio)))`` of its
``head_dim`` and ``num_heads`` stays; each block's MLP hidden layer (``mlp_dim``) loses ``ratio``
like any layer; ``model.hidden_dim`` and ``model.mlp_dim`` follow. The token grid is untouched, so
the pruned copy's CAM layers compare with the reference's. ``"senpis"`` ranks a position by the
mean of its channels' scores over the heads. ``"unstructured"`` also masks each attention's input
projection (``in_proj_weight``) and output projection. torchvision's ``SwinTransformer`` is refused
(its CAMs still work: prune it with your own tool and pass the copies to ``evaluate``).

The classifier's output layer is never pruned, so the logits keep their ``num_classes``
columns: it is found automatically as the last Conv/Linear layer that produces the logits,
and ``ignored_layers=`` replaces that choice (those layers keep their output channels, and
their weights are not masked).

Seeds: ``seeds=`` makes every model once per seed (``seeds=3``: seeds ``seed, seed + 1, seed + 2``;
or a list such as ``[0, 4]``), to tell a pruner's effect from the spread between fine-tuning runs.
A model's seed drives everything random in making it (the ``"random"`` channels, the class-balanced
sample, fine-tuning's batch order, dropout and augmentation), so its weights depend only on the
model, the pruner, the ratio, the recipe and its seed: never on which models were made before it,
nor on the other seeds of the sweep. With one seed the names are ``"<pruner>@<ratio:.2f>"`` and
``"control:finetune"``; with several, every name ends with its seed
(:func:`pescore_nb.schema.seeded_name`: ``"l2@0.10/seed0"``, ``"control:finetune/seed0"``).

Fine-tuning (a :class:`Finetune`) is reproducible: each model is trained with its own data order
and random numbers, both seeded with its seed, by Adam at a learning rate annealed to zero
(``schedule="cosine"``, the default: it halves the seed spread of the control's PE, see
``benchmarks/demo_design.md``; or ``"linear"``) or constant (``"constant"``) (:data:`SCHEDULES`). With fine-tuning,
``sweep`` also returns a control per seed, ``"control:finetune"``
(:data:`pescore_nb.schema.CONTROL_FINETUNE`): a copy of the unpruned model put through the same
fine-tuning, which tells what fine-tuning alone changes (``controls=False`` leaves it out).

Workers: each model is one independent job (prune a copy, fine-tune it, count it). ``workers=4``
runs four at a time in spawned processes (:class:`concurrent.futures.ProcessPoolExecutor`), which
receive the model and the fine-tuning data by pickling: their classes must be importable (not
defined in a notebook or ``__main__``), and a script needs the ``if __name__ == "__main__":`` guard.
On the CPU every job runs with one torch thread, in workers and in this process alike, so the
weights are the same whatever ``workers`` is (use ``workers`` to use more cores).

Every returned model carries ``model.pescore_pruning`` (:data:`pescore_nb.schema.PRUNING_ATTRIBUTE`),
which ``evaluate`` turns into the Dataset's ``model`` coordinates:

- ``pruner``, ``ratio``: as named; the control has pruner ``"none"`` and ratio ``0.0``;
- ``role``: ``"candidate"``, or ``"control"`` for the control;
- ``seed``: the model's seed (:data:`pescore_nb.schema.SEED`), with one seed too;
- ``params``, ``macs``: torch-pruning's counter (``tp.utils.count_ops_and_params``), MACs for one
  image of ``example_input``'s size. For ``"unstructured"`` the model stays dense: ``macs`` is
  unchanged and ``params`` is the dense count minus the weights the masks removed;
- ``provenance``, a JSON-serialisable dict: ``pruning_seed`` (the model's seed); ``finetune``, the
  recipe (``epochs``, ``lr``, ``batch_size``, ``seed``, ``images``: the size of its dataset,
  ``schedule``; ``distill`` and ``temperature`` when distilling) or ``None``;
  ``pruning_data_digest``, the digest of the class-balanced sample for ``"taylor"`` and
  ``"senpis"``, else ``None``; ``finetune_data_digest``, the digest of the whole fine-tuning
  dataset, or ``None``. A digest is the first 16 hex digits of the sha256 of the images' bytes,
  in order, followed by the labels' as int64.
"""

from .finetune import SCHEDULES, Finetune
from .importance import PRUNABLE, FilterNormImportance, SeededRandomImportance
from .pruning import DATA_PRUNERS, PRUNERS
from .sweeping import seed_list, sweep

__all__ = ["DATA_PRUNERS", "PRUNABLE", "PRUNERS", "SCHEDULES", "FilterNormImportance", "Finetune",
           "SeededRandomImportance", "seed_list", "sweep"]
