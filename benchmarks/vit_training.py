"""The zoo ViT against the zoo VGG on the built-in shapes data, trained in the same run.

    python benchmarks/vit_training.py [--install]

Trains both from scratch into a temporary cache (the zoo's recipes, 2 threads, deterministic) and
prints each one's training time, the ratio ViT / VGG (goal: at most 2), their test accuracy (goal
for the ViT: at least 0.9) and the share of the ViT's Grad-CAM++ maps at its CAM layer that are
not degenerate on the test images (goal: at least 90 %). ``--install`` copies the trained weights
into the zoo's cache (where ``zoo.load`` finds them) when they are not there yet.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import torch

from pescore_nb import data, zoo
from pescore_nb.cam import CamEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="copy the trained weights into the zoo's cache")
    args = parser.parse_args()
    test = data.builtin("shapes", "test")
    images = torch.stack([test[i][0] for i in range(len(test))])
    seconds, accuracy = {}, {}
    with tempfile.TemporaryDirectory() as folder:
        for arch in ("vgg", "vit"):
            start = time.perf_counter()
            model = zoo.load(arch, "shapes", cache_dir=folder, progress=False)
            seconds[arch] = time.perf_counter() - start
            accuracy[arch] = zoo.accuracy(model, test)
            print(f"{arch}: trained in {seconds[arch]:.1f} s, test accuracy {accuracy[arch]:.3f}", flush=True)
            installed = zoo.cached_path(arch, "shapes")
            if args.install and not installed.exists():
                installed.parent.mkdir(parents=True, exist_ok=True)
                partial = installed.with_suffix(".partial")  # never a half-copied file where zoo.load looks
                shutil.copy(zoo.cached_path(arch, "shapes", cache_dir=folder), partial)
                os.replace(partial, installed)
        degenerate = CamEngine(model, model.cam_layers, ["gradcam++"]).compute(images).degenerate
    print(f"ViT / VGG training time: {seconds['vit'] / seconds['vgg']:.2f}x (goal <= 2)")
    print(f"ViT Grad-CAM++ maps at {model.cam_layers[0]} not degenerate: "
          f"{1 - degenerate.float().mean().item():.1%} of {degenerate.numel()} (goal >= 90 %)")


if __name__ == "__main__":
    main()
