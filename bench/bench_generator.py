"""Demo-clinic generator: wall time and peak memory per cohort size.

Each size runs in a fresh child process so that its peak resident memory
(``ru_maxrss`` of the child) is its own. Target (issue 2): 1,000,000 patients
in at most 3 minutes and 8 GB on 2 cores. "write s" includes the tables, the
cohort base and ranking the stored worklist; "rank s" is that ranking alone
(a full worklist refresh, issue 23: at most 60 s at a million patients). The
load average is printed because the development machine is shared.

    python -m bench.bench_generator [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# CPU seconds per step (the process's, every thread included) beside the wall time: on a shared
# machine the wall time says how busy the machine was, the CPU time what the work costs.
CHILD = """
import json, resource, sys, time
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
marks = []
from sample_data.demo import write_demo
s = write_demo(sys.argv[1], int(sys.argv[2]), progress=lambda m: marks.append((m.split()[0], cpu())))
marks.append(("end", cpu()))
step = {a: c1 - c0 for (a, c0), (_, c1) in zip(marks, marks[1:])}
print(json.dumps({"simulate_s": s.simulate_s, "write_s": s.write_s, "rank_s": s.rank_s,
                  "simulate_cpu": step["simulating"], "rank_cpu": step["ranking"],
                  "write_cpu": step["writing"] + step["deriving"], "cpu": marks[-1][1] - marks[0][1],
                  "measurements": s.rows["measurement"], "studies": s.rows["imaging_study"]}))
"""


def run_one(n: int, folder: Path) -> dict:
    db = folder / f"bench-{n}.duckdb"
    started = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(db), str(n)], check=True, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(
        patients=n,
        wall_s=wall,
        peak_gib=max(peak_kib, before) / 2**20,
        file_mib=db.stat().st_size / 2**20,
    )
    db.unlink()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--dir", type=Path, default=None, help="scratch folder (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"# demo generator on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start"
    )
    print(
        f"{'patients':>10} {'measurements':>13} {'studies':>10} {'simulate s':>11} {'write s':>8} "
        f"{'rank s':>7} {'wall s':>7} {'CPU s':>17} {'peak GiB':>9} {'file MiB':>9} {'load':>5}"
    )
    print(f"{'(sim / write / rank)':>92}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in sizes:
            r = run_one(n, Path(tmp))
            print(
                f"{r['patients']:>10,} {r['measurements']:>13,} {r['studies']:>10,} "
                f"{r['simulate_s']:>11.1f} {r['write_s']:>8.1f} {r['rank_s']:>7.1f} {r['wall_s']:>7.1f} "
                f"{r['simulate_cpu']:>5.0f} /{r['write_cpu']:>5.0f} /{r['rank_cpu']:>4.0f} "
                f"{r['peak_gib']:>9.2f} {r['file_mib']:>9.0f} {os.getloadavg()[0]:>5.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
