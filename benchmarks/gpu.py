"""pescore_nb on a CUDA device: correctness against the CPU and pytorch-grad-cam, host syncs, throughput.

1. Correctness: resnet18 maps on CUDA equal pytorch-grad-cam's on CUDA (1e-4) and the engine's on
   the CPU; ``evaluate(device="cuda")`` equals the CPU run and leaves the models on the CPU.
2. Host round-trips: the public ``evaluate`` of one batch (images and labels on the host, as a
   Dataset gives them; models on the device) runs under ``torch.cuda.set_sync_debug_mode``; the
   synchronising calls are counted and printed (the results' copies to the host are expected).
3. Throughput on resnet50, 224x224, batch 128, reference + one candidate, 4 layers, gradcam++:
   images/s of the floor (forward + ``torch.autograd.grad`` to the layers, both models, images
   already on the device) and of that ``evaluate`` call, and their ratio.
Run: ``python benchmarks/gpu.py [--batch 128] [--repeats 5]`` on a machine with CUDA.
"""
from __future__ import annotations

import argparse
import copy
import warnings

import pytorch_grad_cam
import torch
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch.utils.data import TensorDataset

import pescore_nb
from pescore_nb import CamEngine

from engine import floor, median_seconds

LAYERS = ["layer1", "layer2", "layer3", "layer4"]

LIBRARY = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
           "layercam": "LayerCAM", "hirescam": "HiResCAM"}


def check_correctness() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    images, targets = torch.rand(8, 3, 128, 128), torch.randint(0, 1000, (8,))
    methods = list(LIBRARY) + ["eigencam"]
    on_cpu = CamEngine(model, LAYERS, methods)(images, targets)
    model.cuda()
    on_gpu = CamEngine(model, LAYERS, methods)(images.cuda(), targets.cuda())
    worst_library = 0.0
    for i, layer in enumerate(LAYERS):
        for j, method in enumerate(LIBRARY):
            cam = getattr(pytorch_grad_cam, LIBRARY[method])(model=model, target_layers=[dict(model.named_modules())[layer]])
            library = cam(input_tensor=images.cuda(), targets=[ClassifierOutputTarget(int(t)) for t in targets])
            cam.activations_and_grads.release()
            worst_library = max(worst_library, (on_gpu[i, j].cpu() - torch.from_numpy(library)).abs().max().item())
    print(f"CUDA maps vs pytorch-grad-cam on CUDA: max abs {worst_library:.2e} (goal < 1e-4)")
    print(f"CUDA maps vs CPU maps, 5 gradient methods: max abs {(on_gpu[:, :5].cpu() - on_cpu[:, :5]).abs().max():.2e}; "
          f"eigencam: {(on_gpu[:, 5].cpu() - on_cpu[:, 5]).abs().max():.2e}")
    model.cpu()
    candidate = copy.deepcopy(model)
    data = TensorDataset(images, targets)
    kwargs = dict(layers=["layer3", "layer4"], cams=["gradcam++"], batch_size=4, progress=False)
    cpu = pescore_nb.evaluate(model, {"copy": candidate}, data, **kwargs)
    gpu = pescore_nb.evaluate(model, {"copy": candidate}, data, device="cuda", **kwargs)
    print(f"evaluate cuda vs cpu: heatmap max abs {abs(gpu.heatmap - cpu.heatmap).max().item():.2e}, "
          f"pe max abs {abs(gpu.pe - cpu.pe).max().item():.2e}, models back on "
          f"{next(model.parameters()).device}/{next(candidate.parameters()).device}")


def pipeline(reference, candidate, data) -> None:
    """The public evaluate of one batch, as a user calls it (results on the host)."""
    pescore_nb.evaluate(reference, {"candidate": candidate}, data, layers=LAYERS, batch_size=len(data), progress=False)


def count_syncs(reference, candidate, data) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            pipeline(reference, candidate, data)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    for warning in syncs:
        print("   sync:", str(warning.message).splitlines()[0][:120])
    return len(syncs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda")
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    check_correctness()

    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval().to(device)
    candidate = copy.deepcopy(reference)
    host_images = torch.rand(args.batch, 3, 224, 224)
    targets = torch.randint(0, 1000, (args.batch,))  # labels live on the host, as a DataLoader gives them
    data = TensorDataset(host_images, targets)
    print(f"synchronising calls in one evaluate of one batch: {count_syncs(reference, candidate, data)}")
    images, device_targets = host_images.to(device), targets.to(device)
    seconds = median_seconds({
        "floor": lambda: [floor(m, images, device_targets, LAYERS) for m in (reference, candidate)],
        "pipeline": lambda: pipeline(reference, candidate, data)}, args.repeats, device)
    floor_s, pipeline_s = seconds["floor"], seconds["pipeline"]
    print(f"resnet50, batch {args.batch}, 224x224, 2 models, {len(LAYERS)} layers, gradcam++, median of {args.repeats}")
    print(f"  floor        {floor_s:7.3f} s  {args.batch / floor_s:8.1f} images/s")
    print(f"  evaluate     {pipeline_s:7.3f} s  {args.batch / pipeline_s:8.1f} images/s")
    print(f"evaluate / floor {pipeline_s / floor_s:6.2f}")


if __name__ == "__main__":
    main()
