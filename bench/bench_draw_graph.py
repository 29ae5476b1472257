"""draw_graph on long chains: the DOT text, and pictures with each renderer (issue 24, item 13).

    python bench/bench_draw_graph.py [--text 10000] [--picture 2000] [--max-nodes 300]

Builds ``y = x * 1.0 * 1.0 ...`` (n ops, 3n + 1 nodes: each op's output and constant, and x),
then, each case in a fresh process: ``draw_graph(y)`` (the DOT text) on the ``--text`` chain, and
``draw_graph(y, "chain.png", renderer=...)`` on the ``--picture`` chain with matplotlib and, where
it is installed, Graphviz's ``dot``. Prints the seconds of the ``draw_graph`` call, the peak
resident memory of the process and its children, and the picture's size in pixels.
``--max-nodes 0`` draws with ``max_nodes=None`` (no folding: what draw_graph did before).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads its BLAS


def one(n: int, renderer: str | None, max_nodes: int | None) -> dict:
    """One case in this process: the seconds of draw_graph, peak memory, picture size."""
    import matplotlib.image

    import tinygan as tg
    from tinygan.graph import draw_graph

    y = tg.tensor(1.0, requires_grad=True)
    for _ in range(n):
        y = y * 1.0
    with tempfile.TemporaryDirectory() as folder:
        path = None if renderer is None else Path(folder) / "chain.png"
        start = time.perf_counter()
        if path is None:
            draw_graph(y)
        else:
            draw_graph(y, path, renderer=renderer, max_nodes=max_nodes)
        seconds = time.perf_counter() - start
        pixels = None if path is None else list(matplotlib.image.imread(path).shape[:2])
    peak = max(resource.getrusage(who).ru_maxrss for who in (0, -1))  # self, children: KiB
    return {"seconds": round(seconds, 3), "peak_MiB": round(peak / 1024), "height_width": pixels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--text", type=int, default=10_000, help="ops in the DOT-text chain")
    parser.add_argument("--picture", type=int, default=2_000, help="ops in the pictured chain")
    parser.add_argument("--max-nodes", type=int, default=300, help="0: None (no folding)")
    parser.add_argument("--one", nargs=3, metavar=("N", "RENDERER", "MAX_NODES"), help="internal")
    args = parser.parse_args()
    if args.one:
        n, renderer, max_nodes = int(args.one[0]), args.one[1], int(args.one[2]) or None
        print(json.dumps(one(n, None if renderer == "text" else renderer, max_nodes)))
        return
    cases = [(args.text, "text"), (args.picture, "matplotlib")]
    cases += [(args.picture, "dot")] if shutil.which("dot") else []
    print(f"max_nodes={args.max_nodes or None}; dot: {shutil.which('dot') or 'not installed'}")
    for n, renderer in cases:
        run = [sys.executable, __file__, "--one", str(n), renderer, str(args.max_nodes)]
        done = subprocess.run(run, capture_output=True, text=True, check=True)
        print(f"{n:>6} ops, {renderer:>10}: {done.stdout.strip()}", flush=True)


if __name__ == "__main__":
    main()
