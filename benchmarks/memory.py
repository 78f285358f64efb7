"""Memory and speed of one training step: the paper's Table IX on this machine.

    python benchmarks/memory.py                 # full run, ~20 min on 2 CPU cores
    python benchmarks/memory.py --quick         # tiny models, a smoke run
    python benchmarks/memory.py --help          # sizes, batches, models, steps, memory limit, ...

Prints the table, the ratios against the baselines and PASS/FAIL per target, and writes
benchmarks/results/memory.json (memory-quick.json with --quick). The same as
``remixformer bench memory --out FILE.json``; the code is in remixformer/bench/memory/.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, whether or not it is installed

from remixformer.cli.bench import memory_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(memory_main(default_out=ROOT / "benchmarks" / "results" / "memory.json"))
