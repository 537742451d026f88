"""How much faster is SeNPIS-Faster when the network before the ablated group runs once?

Scores every filter group of the zoo VGG (``shapes``; ``--model vit``: the zoo ViT) with
:class:`pescore_nb.senpis.SenpisImportance` twice on one thread, in the same run: as it runs (the
sample repeated at the group's first layer, or for a ViT at the input of the encoder block holding
the group) and as the reference (the sample repeated at the network's input, what a network with a
shortcut around the group falls back to), and prints both times, their ratio and the largest score
difference.

    python benchmarks/senpis_speed.py [--model vgg|vit] [--samples-per-class 5]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch_pruning as tp

from pescore_nb import data, zoo
from pescore_nb.prune import PRUNABLE
from pescore_nb.prune.attention import unwrapped_parameters
from pescore_nb.senpis import SenpisImportance, class_balanced_sample, group_filters


def _has(model, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def timed_scores(model, images, labels, groups, repeat_at_group: bool) -> tuple[float, list[torch.Tensor]]:
    """Seconds to score every group, and the scores ``(n_channels,)`` of each."""
    importance = SenpisImportance(model, images, labels)
    importance.repeat_at_group = repeat_at_group
    if not repeat_at_group:
        importance._block_holding = lambda filters: None  # the reference: no block of a ViT repeats either
    start = time.perf_counter()
    scores = [importance(group) for group in groups]
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("vgg", "vit"), default="vgg", help="the zoo model (default vgg)")
    parser.add_argument("--samples-per-class", type=int, default=5, help="the sample SeNPIS ranks on (default 5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = zoo.load(args.model, "shapes")
    images, labels = class_balanced_sample(data.builtin("shapes", "train"), args.samples_per_class, seed=0)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=images[:1],
                                                  unwrapped_parameters=unwrapped_parameters(model))
    ignored = {model.get_submodule(name) for name in ("heads.head", "classifier.1") if _has(model, name)}
    groups, roots, tied = [], [], set()
    for layer in model.modules():
        if isinstance(layer, PRUNABLE) and layer not in ignored | tied and layer in graph.module2node:
            group = graph.get_pruning_group(layer, graph.get_pruner_of_module(layer).prune_out_channels,
                                            list(range(graph.get_out_channels(layer))))
            tied |= {tied_layer for tied_layer, _, _ in group_filters(group)}
            groups.append(group)
            roots.append(layer)
    with torch.no_grad():
        reference, reference_scores = timed_scores(model, images, labels, groups, repeat_at_group=False)
        fast, fast_scores = timed_scores(model, images, labels, groups, repeat_at_group=True)
    difference = max(float((a - b).abs().max()) for a, b in zip(fast_scores, reference_scores))
    channels = sum(graph.get_out_channels(m) for m in roots)
    print(f"SeNPIS scores of {channels} filters in {len(groups)} groups, {len(labels)} images, one thread:")
    print(f"  repeated at the input (reference): {reference:.1f} s")
    print(f"  repeated at the group:             {fast:.1f} s = {reference / fast:.1f}x faster")
    print(f"  largest score difference: {difference:.2e}")


if __name__ == "__main__":
    main()
