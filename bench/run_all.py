"""Run every benchmark in bench/ one after another (`make bench`), each in its own process.

    .venv/bin/python bench/run_all.py [--only read_path,scale] [--skip scale] [--log bench-results.txt]

The scale benchmark builds a 1,000,000-session database the first time (several minutes) and reuses it
afterwards. The figures are only comparable on a quiet machine: the scripts print the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["read_path", "write_path", "scale", "memory", "extraction_cost", "extraction_throughput"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated names to run")
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    parser.add_argument("--log", default="", help="also write everything printed to this file")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    names = [n for n in ORDER if (HERE / f"{n}.py").exists() and (not only or n in only) and n not in skip]
    log = open(args.log, "w") if args.log else None  # noqa: SIM115 - closed at the end
    outcomes = []
    for name in names:
        began = time.monotonic()
        header = f"\n##### bench/{name}.py #####"
        print(header, flush=True)
        proc = subprocess.Popen([sys.executable, str(HERE / f"{name}.py")], cwd=HERE.parent, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
        if log:
            log.write(header + "\n")
        for line in proc.stdout:
            print(line, end="", flush=True)
            if log:
                log.write(line)
        code = proc.wait()
        outcomes.append((name, code, time.monotonic() - began))
    print("\n##### summary #####")
    for name, code, seconds in outcomes:
        print(f"bench/{name}.py: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    if log:
        log.close()
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
