"""Small named answer frames with known right answers (crowd-kit's testing habit)."""

from __future__ import annotations

import pandas as pd


def frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Rows of (task, worker, label) as a string frame."""
    return pd.DataFrame(rows, columns=["task", "worker", "label"], dtype=str)


# Workers "good" and "bad" disagree on every task; the golden task g shows "good" is right.
DISAGREE_WITH_GOLDEN = frame(
    [("g", "good", "cat"), ("g", "bad", "dog")]
    + [(f"t{i}", "good", lab) for i, lab in enumerate(["cat", "dog", "cat", "dog"])]
    + [(f"t{i}", "bad", lab) for i, lab in enumerate(["dog", "cat", "dog", "cat"])]
)
DISAGREE_GOLDEN = pd.Series({"g": "cat"})
DISAGREE_TRUTH = pd.Series({"t0": "cat", "t1": "dog", "t2": "cat", "t3": "dog"})

# One vote each way on t1: a pure tie with no golden information.
TIE = frame([("t1", "w1", "b"), ("t1", "w2", "a"), ("t2", "w1", "a"), ("t2", "w2", "a")])

SINGLE_WORKER = frame([("t1", "w", "x"), ("t2", "w", "y"), ("t3", "w", "x")])

SINGLE_CLASS = frame([("t1", "w1", "x"), ("t1", "w2", "x"), ("t2", "w1", "x")])

# Every task answered by a different single worker: nobody overlaps with anybody.
NO_OVERLAP = frame([("t1", "w1", "a"), ("t2", "w2", "b"), ("t3", "w3", "a"), ("t4", "w4", "c")])

# Labels that look like numbers; "10" sorts before "2" as a string.
DIGITS = frame([("1", "1", "2"), ("1", "2", "2"), ("1", "3", "10"), ("2", "1", "10"), ("2", "2", "10")])
