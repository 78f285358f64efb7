"""The child process of the memory benchmark: ``python -m remixformer.bench.memory --row JSON --out FILE``."""

import sys

from remixformer.bench.memory.measure import _child_main

sys.exit(_child_main())
