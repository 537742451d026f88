"""Does evaluate(store=...) keep memory flat as the number of images grows?

Runs, each in a fresh child process, a stored evaluation of the zoo's VGG on ``shapes`` (64x64)
with 5 models (the reference and l2 pruned at 0.2, 0.4, 0.6, 0.8) x 2 layers x gradcam++, over
1,000 and over 10,000 images, and prints each child's peak RSS and their ratio (goal: 10k under
2 GB and a ratio near 1). The images are drawn on demand, so the data itself takes no memory that
grows with the count. Run: ``python benchmarks/memory.py [--counts 1000 10000]``.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

from pescore_nb import data, evaluate, prune, zoo


class OnDemandShapes(Dataset):
    """``count`` shapes images of 64x64, image i drawn when asked as ``shapes(1, seed=i)``."""

    def __init__(self, count: int):
        self.count = count
        self.classes = list(data.SHAPE_CLASSES)
        self.masks = _Masks(self)

    def __len__(self) -> int:
        return self.count

    def draw(self, index: int):
        return data.shapes(1, 64, seed=index, split="test")

    def __getitem__(self, index: int):
        return self.draw(index)[0]


class _Masks:
    """``masks[start:stop]`` -> ``(stop - start, 64, 64)`` bool, drawn like the images."""

    def __init__(self, images: OnDemandShapes):
        self.images = images

    def __getitem__(self, positions: slice) -> torch.Tensor:
        return torch.cat([self.images.draw(i).masks for i in range(*positions.indices(len(self.images)))])


def child(count: int, store: str) -> None:
    reference = zoo.load("vgg", "shapes", progress=False)
    example = torch.rand(1, 3, 64, 64)
    candidates = prune.sweep(reference, example, [0.2, 0.4, 0.6, 0.8], pruner="l2")
    start = time.perf_counter()
    evaluate(reference, candidates, OnDemandShapes(count), layers=reference.cam_layers, cams=["gradcam++"],
             batch_size=64, store=store, progress=False)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{count} {peak_mib:.1f} {time.perf_counter() - start:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    zoo.load("vgg", "shapes")  # train once, outside the measured children, if not cached
    peaks = {}
    with tempfile.TemporaryDirectory() as folder:
        for count in args.counts:
            store = str(Path(folder) / f"run-{count}.zarr")
            output = subprocess.run([sys.executable, __file__, "--child", str(count), store],
                                    check=True, capture_output=True, text=True).stdout.split()
            peaks[count] = float(output[1])
            print(f"{count:6d} images: peak RSS {peaks[count]:7.1f} MiB, evaluate took {output[2]} s")
    low, high = min(peaks), max(peaks)
    print(f"peak RSS at {high} / at {low} images: {peaks[high] / peaks[low]:.2f}   (goal: about 1, and < 2 GiB)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3])
    else:
        main()
