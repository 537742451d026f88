"""How close is pescore_nb to the cost of the gradients it needs, and how far ahead of pytorch-grad-cam?

Measured in one run on torchvision resnet18 (weights=None), a batch of 16 images at 224x224, 4 layers:

  floor      one forward + one ``torch.autograd.grad`` of the target logits to the 4 layers' outputs
             (no parameter gradients): the least any CAM method needing gradients can cost.
  engine     ``CamEngine`` with the 4 layers x gradcam++ (maps only).
  pipeline   the whole PE pipeline of ``evaluate``: reference + one candidate, maps, SSIM, IoU, conf.
  library    pytorch-grad-cam's GradCAMPlusPlus, one call per layer (and per model for the pipeline).

Prints the median seconds of each and the ratios: engine / floor, library / engine,
pipeline / floor (goal <= 1.15) and library / pipeline (goal >= 5).
Run: ``python benchmarks/engine.py [--device cuda] [--batch 16] [--size 224] [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import pytorch_grad_cam
import torch
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from pescore_nb import CamEngine, PEConfig
from pescore_nb.evaluation import _evaluate_batch

LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def floor(model, images, targets) -> None:
    """Forward + autograd.grad of the target logits to the layers' outputs, parameters frozen."""
    outputs = []
    model.requires_grad_(False)
    handles = [dict(model.named_modules())[name].register_forward_hook(lambda m, i, o: outputs.append(o))
               for name in LAYERS]
    try:
        logits = model(images.detach().requires_grad_(True))
        torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), outputs)
    finally:
        for handle in handles:
            handle.remove()
        model.requires_grad_(True)


def library(model, images, targets) -> None:
    """pytorch-grad-cam's Grad-CAM++, one call per layer."""
    for name in LAYERS:
        cam = pytorch_grad_cam.GradCAMPlusPlus(model=model, target_layers=[dict(model.named_modules())[name]])
        try:
            cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        finally:
            cam.activations_and_grads.release()


def median_seconds(functions: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median wall time of each function, run round-robin (so drifts in machine load hit all alike)."""
    def timed(function) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for function in functions.values():  # warm-up
        function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(timed(function))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval().to(device)
    candidate = copy.deepcopy(reference)
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)
    targets = torch.randint(0, 1000, (args.batch,), device=device)
    engines = [CamEngine(model, LAYERS, ["gradcam++"]) for model in (reference, candidate)]
    config = PEConfig()

    seconds = median_seconds({
        "floor (1 model)": lambda: floor(reference, images, targets),
        "engine (1 model)": lambda: engines[0](images, targets),
        "pytorch-grad-cam (1 model)": lambda: library(reference, images, targets),
        "floor (2 models)": lambda: [floor(m, images, targets) for m in (reference, candidate)],
        "PE pipeline (2 models)": lambda: _evaluate_batch(engines, images, targets.cpu(), config),
        "pytorch-grad-cam (2 models)": lambda: [library(m, images, targets) for m in (reference, candidate)],
    }, args.repeats, device)
    print(f"resnet18, batch {args.batch}, {args.size}x{args.size}, {len(LAYERS)} layers, gradcam++, "
          f"{device}, median of {args.repeats}")
    for name, value in seconds.items():
        print(f"  {name:30s} {value:8.3f} s")
    print(f"engine / floor                 {seconds['engine (1 model)'] / seconds['floor (1 model)']:6.2f}")
    print(f"pytorch-grad-cam / engine      {seconds['pytorch-grad-cam (1 model)'] / seconds['engine (1 model)']:6.2f}")
    print(f"PE pipeline / floor            {seconds['PE pipeline (2 models)'] / seconds['floor (2 models)']:6.2f}"
          "   (goal <= 1.15)")
    print(f"pytorch-grad-cam / PE pipeline "
          f"{seconds['pytorch-grad-cam (2 models)'] / seconds['PE pipeline (2 models)']:6.2f}   (goal >= 5)")


if __name__ == "__main__":
    main()
