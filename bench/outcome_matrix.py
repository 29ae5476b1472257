"""The outcome tests over seeds and BLAS kernels: ``python bench/outcome_matrix.py``.

A test marked ``outcome`` asserts what training achieves, a statistical claim: it must hold for
any seed and for either family of OpenBLAS kernels (which round float sums differently). This
runs ``pytest -m outcome --seed-offset N`` for each seed offset (default 0-4) under each kernel
family, each run in its own process with the kernel chosen in that process's environment only:

- ``haswell``: ``OPENBLAS_CORETYPE=Haswell`` (the AVX2 kernels);
- ``native``: ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` removed, so OpenBLAS picks the CPU's
  own kernels (SkylakeX on an AVX-512 machine).

It prints which kernel each family really ran (through threadpoolctl, where it is installed), a
seed x kernel table of passed tests, and for each metric the tests state through the ``outcome``
fixture (``tests/conftest.py``) its bound and its values in every run, with the worst slack.
``--markdown`` prints the tables as Markdown, ``--compact`` each metric's range instead of every
run's value, ``--json FILE`` keeps every run's results and ``--from-json FILE`` prints their
tables again without running anything. Arguments after ``--`` go to pytest (``-- -k bigan``).
Exit status 1 if any run failed a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ("haswell", "native")
PROBE = (
    "import numpy\n"
    "try:\n"
    "    from threadpoolctl import threadpool_info\n"
    "except ImportError:\n"
    "    print('? (pip install threadpoolctl to see it)')\n"
    "else:\n"
    "    print(', '.join(i.get('architecture') or '?' for i in threadpool_info()"
    " if i['user_api'] == 'blas') or '?')\n"
)


def kernel_env(kernel: str) -> dict[str, str]:
    """This process's environment with the kernel family's settings (the child's only)."""
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if kernel == "haswell":
        env["OPENBLAS_CORETYPE"] = "Haswell"
    else:
        env.pop("OPENBLAS_L2_SIZE", None)
    return env


def run_once(kernel: str, offset: int, pytest_args: list[str]) -> dict:
    """One ``pytest -m outcome`` run: per-test outcomes, the metrics it logged, its time."""
    with tempfile.TemporaryDirectory() as tmp:
        log, xml = Path(tmp) / "outcomes.jsonl", Path(tmp) / "junit.xml"
        env = kernel_env(kernel) | {"TINYGAN_OUTCOME_LOG": str(log)}
        cmd = [sys.executable, "-m", "pytest", "-m", "outcome", f"--seed-offset={offset}",
               "-p", "no:cacheprovider", "-q", f"--junitxml={xml}", *pytest_args]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        tests = {}
        if xml.exists():
            for case in ET.parse(xml).iter("testcase"):
                name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
                tags = {child.tag for child in case}
                tests[name] = (
                    "failed" if tags & {"failure", "error"}
                    else "skipped" if "skipped" in tags else "passed"
                )  # fmt: skip
        metrics = (
            [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        )
    if not tests:  # pytest itself failed (a usage error, an import error)
        sys.exit(f"pytest failed under {kernel}, offset {offset}:\n{proc.stdout}{proc.stderr}")
    return {"tests": tests, "metrics": metrics, "seconds": seconds}


def slack(op: str, value: float, bound: float) -> float:
    """How far ``value`` is inside its bound (negative: the claim failed)."""
    return bound - value if op in ("<", "<=") else value - bound


def table(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [rows[0], ["---"] * len(rows[0]), *rows[1:]]
        return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--offsets", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--compact", action="store_true", help="metrics: range, not each run")
    parser.add_argument("--from-json", type=Path, help="print the tables of an earlier --json")
    parser.add_argument(
        "--json", type=Path, help="also write every run's results here (after each)"
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --), e.g. -k bigan")
    args = parser.parse_args(argv)

    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        arch = saved["architectures"]
        runs = {(r.pop("kernel"), r.pop("offset")): r for r in saved["runs"]}
        args.kernels = [k for k in KERNELS if k in arch]
        args.offsets = sorted({o for _, o in runs})
        return report(runs, arch, args)
    arch = {}
    for kernel in args.kernels:
        probe = subprocess.run([sys.executable, "-c", PROBE], env=kernel_env(kernel),
                               capture_output=True, text=True)  # fmt: skip
        arch[kernel] = probe.stdout.strip() or probe.stderr.strip()
        print(f"{kernel}: OpenBLAS runs its {arch[kernel]} kernels", flush=True)
    runs = {}
    for offset in args.offsets:
        for kernel in args.kernels:
            run = runs[kernel, offset] = run_once(kernel, offset, args.pytest_args)
            failed = [t for t, s in run["tests"].items() if s == "failed"]
            print(f"offset {offset}, {kernel}: {len(run['tests']) - len(failed)}/"
                  f"{len(run['tests'])} passed in {run['seconds']:.0f} s"
                  + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)  # fmt: skip
            if args.json:
                records = [{"kernel": k, "offset": o, **r} for (k, o), r in runs.items()]
                args.json.write_text(json.dumps({"architectures": arch, "runs": records}, indent=1))
    return report(runs, arch, args)


def report(runs: dict, arch: dict[str, str], args: argparse.Namespace) -> int:
    """Print the tables; 1 if any test failed in any run."""
    columns = [(k, o) for k in args.kernels for o in args.offsets]
    print("\nPassed tests, seed offset x kernel:\n")
    rows = [["seed offset", *(f"{k} ({arch[k]})" for k in args.kernels)]]
    for offset in args.offsets:
        cells = []
        for kernel in args.kernels:
            states = runs[kernel, offset]["tests"].values()
            cell = f"{sum(s == 'passed' for s in states)}/{len(states)}"
            skipped = sum(s == "skipped" for s in states)
            cells.append(cell + (f" ({skipped} skipped)" if skipped else ""))
        rows.append([str(offset), *cells])
    print(table(rows, args.markdown))

    values = defaultdict(dict)  # (test, metric, op, bound) -> {(kernel, offset): value}
    for (kernel, offset), run in runs.items():
        for m in run["metrics"]:
            values[m["test"], m["metric"], m["op"], m["bound"]][kernel, offset] = m["value"]
    print("\nMetrics: " + ("the runs that reached each, its range over them, the worst slack:\n"
          if args.compact else "a value per run ('-': not reached, an earlier claim of its "
          "test failed), the worst slack:\n"))  # fmt: skip
    heads = ["runs", "min", "max"] if args.compact else [f"{k[0]}{o}" for k, o in columns]
    rows = [["test", "metric", "bound", *heads, "worst slack"]]
    for (test, metric, op, bound), got in sorted(values.items()):
        worst = min(slack(op, v, bound) for v in got.values())
        if args.compact:
            cells = [str(len(got)), f"{min(got.values()):.3g}", f"{max(got.values()):.3g}"]
        else:
            cells = [f"{got[c]:.3g}" + ("!" if slack(op, got[c], bound) < 0 else "")
                     if c in got else "-" for c in columns]  # fmt: skip
        rows.append([test.split("::")[-1], metric, f"{op} {bound:g}", *cells, f"{worst:+.3g}"])
    print(table(rows, args.markdown))
    seconds = sum(r["seconds"] for r in runs.values())
    print(f"\n{len(runs)} runs in {seconds / 60:.1f} min ('!': the claim failed in that run)")
    return int(any(s == "failed" for r in runs.values() for s in r["tests"].values()))


if __name__ == "__main__":
    sys.exit(main())
