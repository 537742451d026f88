"""What a user waits for: the public ``evaluate()`` against the least its gradients can cost.

The setting (flags change it): torchvision resnet18 (``weights=None``), 64 random images of
224x224 in batches of 16, layers ``layer3`` and ``layer4``, ``evaluate``'s default CAM (gradcam++),
the reference plus four copies pruned by ``pescore_nb.prune.sweep(..., pruner="l2")`` at 0.2, 0.4,
0.6 and 0.8; the CPU with 2 threads.

  floor        for every batch and every model: one forward and one ``torch.autograd.grad`` of the
               target logits to the layers' outputs (no parameter gradients) -- the least any
               gradient CAM method costs; evaluate cannot do less.
  evaluate     ``pescore_nb.evaluate(reference, candidates, data, layers=..., batch_size=16)`` with
               every other argument at its default (Sp2PS off).
  + Sp2PS      the same with ``sp2ps_config=Sp2PSConfig()``.

The three run round-robin (the order rotating each round) for ``--rounds`` rounds after one
warm-up, so drifts in the machine's load hit all alike; each round gives the ratios evaluate /
floor and evaluate+Sp2PS / floor of that round. Prints, for each, the seconds, the median ratio and
its interquartile range (goals: <= 1.15 and <= 1.30). Then ``--profile-rounds`` rounds of the three
under cProfile: the median share of the profiled floor taken by maps (``CamEngine.compute``:
forward, backward and the CAMs, so at least 1), SSIM, IoU, conf, Sp2PS (the public
``pescore_nb.metrics`` / ``pescore_nb.sp2ps`` functions and methods that ``evaluate`` calls) and
the rest (checks, MAC counting, xarray), with the rest's five largest items. ``--clock process``
times CPU seconds instead of wall seconds: with ``--threads 1`` the steadier figure on a shared machine.

Measured on the 2-core development machine while others' jobs kept its load near 4.5:
``--threads 1 --clock process``: evaluate / floor 1.22 (IQR 1.16-1.28), + Sp2PS 1.28 (1.25-1.28);
breakdown maps 1.049, SSIM 0.061, IoU 0.016, conf 0.000, rest 0.127 (xarray concat 0.040, the
class-count forwards 0.020, MAC counting 0.019, entering/leaving the engines 0.020), Sp2PS 0.087.
The scores alone (same CAM outputs, A/B per batch) went from 0.173 to 0.068 of the floor, and
from 0.521 to 0.149 with Sp2PS. With the default 2 threads under that load, wall-clock rounds
ranged 0.35-5.0 (the machine's other jobs stall OpenMP threads), so no figure was usable there.

Last, a smaller check of the engine alone on one batch: ``CamEngine`` vs its floor (1 model) and
pytorch-grad-cam's GradCAMPlusPlus (one call per layer) vs the engine (1.07 and 7.4 above).

Run: ``python benchmarks/engine.py [--rounds 7] [--profile-rounds 3] [--images 64] [--batch 16]
[--size 224] [--threads 2] [--clock wall] [--device cpu]``.
"""
from __future__ import annotations

import argparse
import cProfile
import inspect
import pstats
import statistics
import time

import pytorch_grad_cam
import torch
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch.utils.data import TensorDataset

import pescore_nb
from pescore_nb import CamEngine, Sp2PSConfig, metrics, sp2ps
from pescore_nb.prune import sweep

LAYERS = ["layer3", "layer4"]
RATIOS = [0.2, 0.4, 0.6, 0.8]


def floor(model, images, targets, layers=LAYERS) -> None:
    """Forward + autograd.grad of the target logits to the layers' outputs, parameters frozen."""
    outputs = []
    model.requires_grad_(False)
    handles = [dict(model.named_modules())[name].register_forward_hook(lambda m, i, o: outputs.append(o))
               for name in layers]
    try:
        logits = model(images.detach().requires_grad_(True))
        torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), outputs)
    finally:
        for handle in handles:
            handle.remove()
        model.requires_grad_(True)


def library(model, images, targets, layers=LAYERS) -> None:
    """pytorch-grad-cam's Grad-CAM++, one call per layer."""
    for name in layers:
        cam = pytorch_grad_cam.GradCAMPlusPlus(model=model, target_layers=[dict(model.named_modules())[name]])
        try:
            cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        finally:
            cam.activations_and_grads.release()


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def round_robin(functions: dict, rounds: int, device: torch.device, clock=time.perf_counter) -> dict[str, list[float]]:
    """Seconds of each function in each round: one warm-up, then ``rounds`` rounds, the order rotating."""
    def timed(function) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - start

    for function in functions.values():
        function()
    names = list(functions)
    times = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            times[name].append(timed(functions[name]))
    return times


def median_seconds(functions: dict, repeats: int, device: torch.device, clock=time.perf_counter) -> dict[str, float]:
    """Median time of each function over ``repeats`` round-robin rounds."""
    return {name: statistics.median(values) for name, values in round_robin(functions, repeats, device, clock).items()}


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, middle, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, middle, high


# The breakdown: the public functions and methods evaluate calls for each component, found in the profile.
COMPONENTS = {
    "maps": [CamEngine.compute],
    "SSIM": [metrics.SSIMReference.__init__, metrics.SSIMReference.compare, metrics.ssim],
    "IoU": [metrics.IoUReference.__init__, metrics.IoUReference.compare, metrics.iou],
    "conf": [metrics.confidence, metrics.combine],
    "Sp2PS": [sp2ps.Sp2PSReference.__init__, sp2ps.Sp2PSReference.compare, sp2ps.sp2ps],
}


def _profile_key(function) -> tuple[str, int, str]:
    code = function.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def breakdown(profile: cProfile.Profile) -> tuple[float, dict[str, float], list[tuple[str, float]]]:
    """Seconds of the profiled call, of each component (the time of its functions when called by the
    module that defines ``evaluate``) and the rest; and the rest's five largest callees of that module."""
    stats = pstats.Stats(profile).stats
    total = max(cumulative for _, _, _, cumulative, _ in stats.values())
    owner = {_profile_key(function): name for name, functions in COMPONENTS.items() for function in functions}
    evaluation_file = inspect.getfile(pescore_nb.evaluate)
    parts = dict.fromkeys(COMPONENTS, 0.0)
    rest_items = []
    for callee, (_, _, _, _, callers) in stats.items():
        seconds = sum(values[3] for caller, values in callers.items() if caller[0] == evaluation_file)
        if not seconds:
            continue
        if callee in owner:
            parts[owner[callee]] += seconds
        elif callee[0] != evaluation_file:
            rest_items.append((pstats.func_std_string(callee), seconds))
    parts["rest"] = total - sum(parts.values())
    return total, parts, sorted(rest_items, key=lambda item: -item[1])[:5]


def profiled(function, clock=time.perf_counter) -> cProfile.Profile:
    profile = cProfile.Profile(clock)
    profile.runcall(function)
    return profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile-rounds", type=int, default=3)
    parser.add_argument("--clock", choices=list(CLOCKS), default="wall",
                        help="wall time, or the process's CPU time (steadier on a shared machine with --threads 1)")
    args = parser.parse_args()
    clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval().to(device)
    images = torch.rand(args.images, 3, args.size, args.size)
    labels = torch.randint(0, 1000, (args.images,))
    candidates = sweep(reference, images[:1].to(device), RATIOS, pruner="l2")
    models = [reference, *candidates.values()]
    data = TensorDataset(images, labels)
    batches = [(images[start:start + args.batch].to(device), labels[start:start + args.batch].to(device))
               for start in range(0, args.images, args.batch)]
    kwargs = dict(layers=LAYERS, batch_size=args.batch, progress=False)
    if device.type != "cpu":
        kwargs["device"] = args.device

    def floor_all() -> None:
        for batch_images, batch_labels in batches:
            for model in models:
                floor(model, batch_images, batch_labels)

    def evaluate_default() -> None:
        pescore_nb.evaluate(reference, candidates, data, **kwargs)

    def evaluate_sp2ps() -> None:
        pescore_nb.evaluate(reference, candidates, data, sp2ps_config=Sp2PSConfig(), **kwargs)

    times = round_robin({"floor": floor_all, "evaluate": evaluate_default, "evaluate + Sp2PS": evaluate_sp2ps},
                        args.rounds, device, clock)
    print(f"resnet18, {args.images} images {args.size}x{args.size} in batches of {args.batch}, layers "
          f"{'+'.join(LAYERS)}, gradcam++, reference + l2 at {RATIOS}, {device}, {args.threads} threads, "
          f"{args.rounds} round-robin rounds, {args.clock} clock")
    for name, values in times.items():
        low, middle, high = quartiles(values)
        print(f"  {name:18s} median {middle:7.3f} s  (IQR {low:.3f}-{high:.3f})")
    for name, goal in (("evaluate", 1.15), ("evaluate + Sp2PS", 1.30)):
        ratios = [seconds / floor_s for seconds, floor_s in zip(times[name], times["floor"])]
        low, middle, high = quartiles(ratios)
        print(f"  {name + ' / floor':25s} median {middle:5.2f}  (IQR {low:.2f}-{high:.2f}; "
              f"rounds {', '.join(f'{r:.2f}' for r in ratios)})   goal <= {goal:.2f}")

    shares = {name: [] for name in ("evaluate", "evaluate + Sp2PS")}
    rest_shares = {name: {} for name in shares}
    for _ in range(args.profile_rounds):  # each profiled call against the profiled floor of its round
        floor_total = breakdown(profiled(floor_all, clock))[0]
        for name, function in (("evaluate", evaluate_default), ("evaluate + Sp2PS", evaluate_sp2ps)):
            total, parts, rest_items = breakdown(profiled(function, clock))
            shares[name].append({"total": total / floor_total, **{part: s / floor_total for part, s in parts.items()}})
            for item, seconds in rest_items:
                rest_shares[name].setdefault(item, []).append(seconds / floor_total)
    print(f"Breakdown under cProfile, shares of the floor under cProfile (medians of {args.profile_rounds} rounds):")
    for name, rounds in shares.items():
        median = {part: statistics.median(round_[part] for round_ in rounds) for part in rounds[0]}
        print(f"  {name:18s} total {median.pop('total'):5.2f} = "
              + " + ".join(f"{part} {share:.3f}" for part, share in median.items()))
        largest = sorted(rest_shares[name].items(), key=lambda item: -statistics.median(item[1]))[:5]
        for item, values in largest:
            print(f"      rest: {statistics.median(values):.3f}  {item}")

    one_images, one_targets = batches[0]
    engine = CamEngine(reference, ["layer1", "layer2", "layer3", "layer4"])
    all_layers = ["layer1", "layer2", "layer3", "layer4"]
    seconds = median_seconds({
        "floor": lambda: floor(reference, one_images, one_targets, all_layers),
        "engine": lambda: engine(one_images, one_targets),
        "pytorch-grad-cam": lambda: library(reference, one_images, one_targets, all_layers),
    }, args.rounds, device, clock)
    print(f"Engine alone, 1 model, 1 batch of {args.batch}, 4 layers, gradcam++ (median of {args.rounds}): "
          + ", ".join(f"{name} {value:.3f} s" for name, value in seconds.items()))
    print(f"  engine / floor {seconds['engine'] / seconds['floor']:.2f}, "
          f"pytorch-grad-cam / engine {seconds['pytorch-grad-cam'] / seconds['engine']:.2f}")


if __name__ == "__main__":
    main()
