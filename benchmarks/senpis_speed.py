"""How much faster is SeNPIS-Faster when the network before the ablated group runs once?

Scores every filter group of the zoo VGG (``shapes``) with :class:`pescore_nb.senpis.SenpisImportance`
twice on one thread, in the same run: as it runs (the sample repeated at the group's first layer) and
as the reference (the sample repeated at the network's input, what a network with a shortcut around
the group falls back to), and prints both times, their ratio and the largest score difference.

    python benchmarks/senpis_speed.py [--samples-per-class 5]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch_pruning as tp

from pescore_nb import data, zoo
from pescore_nb.senpis import SenpisImportance, class_balanced_sample


def timed_scores(model, images, labels, groups, repeat_at_group: bool) -> tuple[float, list[torch.Tensor]]:
    """Seconds to score every group, and the scores ``(n_channels,)`` of each."""
    importance = SenpisImportance(model, images, labels)
    importance.repeat_at_group = repeat_at_group
    start = time.perf_counter()
    scores = [importance(group) for group in groups]
    return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples-per-class", type=int, default=5, help="the sample SeNPIS ranks on (default 5)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = zoo.load("vgg", "shapes")
    images, labels = class_balanced_sample(data.builtin("shapes", "train"), args.samples_per_class, seed=0)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=images[:1])
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    groups = [graph.get_pruning_group(m, tp.prune_conv_out_channels, list(range(m.out_channels))) for m in convolutions]
    with torch.no_grad():
        reference, reference_scores = timed_scores(model, images, labels, groups, repeat_at_group=False)
        fast, fast_scores = timed_scores(model, images, labels, groups, repeat_at_group=True)
    difference = max(float((a - b).abs().max()) for a, b in zip(fast_scores, reference_scores))
    channels = sum(m.out_channels for m in convolutions)
    print(f"SeNPIS scores of {channels} filters in {len(groups)} groups, {len(labels)} images, one thread:")
    print(f"  repeated at the input (reference): {reference:.1f} s")
    print(f"  repeated at the group:             {fast:.1f} s = {reference / fast:.1f}x faster")
    print(f"  largest score difference: {difference:.2e}")


if __name__ == "__main__":
    main()
