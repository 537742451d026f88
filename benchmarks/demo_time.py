"""How long does ``pescore demo`` take, as a new user runs it?

Runs, each in its own process, on wall clock:

1. the reference: one training of the zoo VGG on ``shapes`` (``zoo.load`` into an empty cache),
   the unit the machine's speed is measured in;
2. ``pescore demo`` from an empty model cache (it trains the reference and the twin, prunes and
   fine-tunes every candidate and ``control:finetune`` with each of the demo's ``DEMO_SEEDS`` seeds
   in one worker per core, evaluates them with the twin and the randomised copy, and writes the report);
3. ``pescore demo --quick`` with the models now cached (three seeds too).

and prints each time with its ratio to the reference and the load average before and after each run.
The goals: the VGG demo <= 8.5 x one training (about 10 min on 2 idle cores), the ViT demo
(``--model vit``, which trains the zoo ViT and its twin) <= 15 min, and 120 s for either quick demo;
run it on an idle machine, or read the ratio beside the load.

    python benchmarks/demo_time.py [--model vgg|vit] [--keep DIR] [--seed BASE] [--quick-only]

``--quick-only`` skips the full demo and times ``--quick`` with the models in this machine's model cache.

``--keep DIR`` keeps both runs' output folders, printed tables and progress (``DIR/demo``, ``DIR/demo.txt``,
``DIR/quick``, ``DIR/quick.txt``) and their model cache (``DIR/cache``), so the timed run is also a
``pescore demo --seed BASE`` whose verdict can be read, and later runs can reuse the cache.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pescore_nb import zoo

PESCORE = Path(sys.executable).with_name("pescore")


def load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def timed(command: list[str], cache: Path, log: Path | None = None) -> tuple[float, str]:
    """Wall seconds of ``command`` run with ``PESCORE_CACHE=cache``, and the load before/after; raises with
    the end of its error output if it fails. Its output goes to ``log`` (and its progress bars and errors
    to ``log`` with ``.err`` added) when given."""
    before = load()
    start = time.perf_counter()
    with open(log, "w") if log else open(os.devnull, "w") as out, \
            open(f"{log}.err", "w+") if log else tempfile.TemporaryFile("w+") as err:
        finished = subprocess.run(command, env={**os.environ, "PESCORE_CACHE": str(cache)}, stdout=out, stderr=err)
        if finished.returncode:
            err.seek(0)
            raise SystemExit(f"{' '.join(command)} failed (exit {finished.returncode}):\n{err.read()[-3000:]}")
    return time.perf_counter() - start, f"{before} before, {load()} after"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", help="keep the outputs, printed tables and model cache in this folder")
    parser.add_argument("--seed", type=int, default=0, help="the demo's --seed (default 0)")
    parser.add_argument("--model", choices=("vgg", "vit"), default="vgg", help="the demo's --model (default vgg)")
    parser.add_argument("--quick-only", action="store_true",
                        help="time only the reference and --quick, with the models in this machine's model cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        cache = zoo.default_cache_dir() if args.quick_only else folder / "cache"
        if args.quick_only and not all(zoo.cached_path(args.model, "shapes", seed=seed).exists() for seed in (0, 1)):
            raise SystemExit(f"--quick-only times the demo with its models cached: run `pescore demo --model "
                             f"{args.model} --quick` once first, or leave out --quick-only.")
        if not args.quick_only and any(cache.glob("*")):
            raise SystemExit(f"{cache} is not empty: the demo must start from an empty cache.")
        training, training_load = timed(
            [sys.executable, "-c", "from pescore_nb import zoo; zoo.load('vgg', 'shapes', progress=False)"],
            Path(scratch) / "reference-cache")
        demo_command = [str(PESCORE), "demo", "--model", args.model, "--seed", str(args.seed)]
        if not args.quick_only:
            demo, demo_load = timed(demo_command + ["--out", str(folder / "demo")], cache,
                                    folder / "demo.txt" if args.keep else None)
        quick, quick_load = timed(demo_command + ["--quick", "--out", str(folder / "quick")], cache,
                                  folder / "quick.txt" if args.keep else None)
    goal = "goal <= 8.5 x" if args.model == "vgg" else "goal <= 15 min"
    print(f"one zoo VGG training (reference): {training:.0f} s ({training_load})")
    if not args.quick_only:
        print(f"pescore demo --model {args.model} --seed {args.seed}, empty cache: {demo:.0f} s = {demo / 60:.1f} min = "
              f"{demo / training:.1f} x the reference ({goal}) ({demo_load})")
    print(f"pescore demo --model {args.model} --quick, cached: {quick:.0f} s = {quick / training:.1f} x the reference "
          f"(goal <= 120 s) ({quick_load})")

if __name__ == "__main__":
    main()
