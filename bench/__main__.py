"""Run every benchmark in turn: `python -m bench [--quick]`."""

from __future__ import annotations

import sys

from bench import (
    bench_analytics,
    bench_batch,
    bench_forecast,
    bench_generator,
    bench_inference,
    bench_pages,
    bench_quality,
    bench_saliency,
    bench_treatment,
    bench_viewer,
    bench_volumes,
)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    bench_generator.main(["--sizes", "10000,100000"] if quick else [])
    print()
    bench_inference.main(["--n", "32"] if quick else [])
    print()
    bench_volumes.main(["--reps", "3"] if quick else [])
    print()
    bench_batch.main(["--n", "200", "--patients", "3000", "--no-ingest"] if quick else [])
    print()
    bench_treatment.main(
        ["--patients", "500", "--cohort", "2000", "--latency-n", "50", "--kernel-n", "3"]
        if quick
        else []
    )
    print()
    bench_saliency.main(["--n", "6", "--sweep", "16,32"] if quick else [])
    print()
    bench_forecast.main(
        ["--patients", "2000", "--latency-n", "20", "--bootstrap", "5"] if quick else []
    )
    print()
    # --refresh: the full and incremental worklist refresh are timed even on a current store
    bench_analytics.main(
        ["--patients", "100000", "--reps", "3", "--refresh"] if quick else ["--refresh"]
    )
    print()
    bench_quality.main(["--patients", "500", "--reps", "1"] if quick else [])
    print()
    bench_viewer.main(["--runs", "2", "--slices", "20"] if quick else [])
    print()
    bench_pages.main(
        ["--reps", "2", "--patients", "500", "--roles", "oncologist,ethics"] if quick else []
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
