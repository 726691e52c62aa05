"""Progress bars for the command line's long work: tqdm on stderr, drawn only when stderr is a terminal.

Why ``disable=None``: that is tqdm's "only on a TTY", so a person at a terminal
sees how far ``oncolens demo``, ``recommend --train``, ``predict``, ``ingest``
and ``deidentify`` have got, while piped or captured output (CI logs, tests,
``--json > results.jsonl``) stays exactly as before: stdout carries only the
results, stderr only the messages. Results printed while a bar is drawn go
through ``echo`` so that the bar does not cut a line in two.

Library functions take the wrapper as ``track(iterable, description, total)``
and do not import tqdm: the bar is the CLI's business.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterable[T]:
    """``iterable``, with a bar on stderr while it is consumed (nothing when stderr is not a terminal)."""
    # lazy: tqdm is imported only when this is used (start-up time)
    from tqdm import tqdm

    return tqdm(
        iterable,
        desc=f"oncolens: {description}",
        total=total,
        file=sys.stderr,
        disable=None,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.2,
    )


def echo(line: str) -> None:
    """Print a result line on stdout (flushed) without breaking a bar drawn on stderr."""
    # lazy: tqdm is imported only when this is used (start-up time)
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()
