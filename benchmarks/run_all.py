"""Run every benchmark script in this folder.

    python benchmarks/run_all.py          # quick settings where a script offers --quick
    python benchmarks/run_all.py --full   # each script's full, documented settings
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
full = "--full" in sys.argv[1:]
failed = 0
for script in sorted(here.glob("bench_*.py")):
    args = [] if full or "--quick" not in script.read_text() else ["--quick"]
    print(f"\n=== {script.name} {' '.join(args)}", flush=True)
    failed += subprocess.call([sys.executable, str(script), *args]) != 0
sys.exit(1 if failed else 0)
