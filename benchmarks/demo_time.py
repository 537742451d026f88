"""How long does ``pescore demo`` take, as a new user runs it?

Runs, each in its own process, on wall clock:

1. the reference: one training of the zoo VGG on ``shapes`` (``zoo.load`` into an empty cache),
   the unit the machine's speed is measured in;
2. ``pescore demo`` from an empty model cache (it trains the reference and the twin, prunes and
   fine-tunes 37 models, evaluates 40 and writes the report);
3. ``pescore demo --quick`` with the models now cached.

and prints each time with its ratio to the reference. The issue's goals are absolute (8 min from
an empty cache, 90 s quick, on 2 idle cores), so the times are printed too; run it on an idle
machine.

    python benchmarks/demo_time.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PESCORE = Path(sys.executable).with_name("pescore")


def timed(command: list[str], cache: Path) -> float:
    """Wall seconds of ``command`` run with ``PESCORE_CACHE=cache``; raises if it fails."""
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "PESCORE_CACHE": str(cache)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        training = timed([sys.executable, "-c", "from pescore_nb import zoo; zoo.load('vgg', 'shapes', progress=False)"],
                         folder / "reference-cache")
        demo = timed([str(PESCORE), "demo", "--out", str(folder / "demo")], folder / "cache")
        quick = timed([str(PESCORE), "demo", "--quick", "--out", str(folder / "quick")], folder / "cache")
    print(f"one zoo training (reference): {training:.0f} s")
    print(f"pescore demo, empty cache:    {demo:.0f} s = {demo / 60:.1f} min = {demo / training:.1f} x the reference "
          f"(goal <= 8 min on 2 idle cores)")
    print(f"pescore demo --quick, cached: {quick:.0f} s = {quick / training:.1f} x the reference (goal <= 90 s)")


if __name__ == "__main__":
    main()
