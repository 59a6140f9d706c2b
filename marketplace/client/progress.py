"""Progress bars on stderr (tqdm): on by default when stderr is a terminal, so logs stay clean."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def wanted(flag: bool | None) -> bool:
    """An explicit choice wins; otherwise a bar only where someone watches."""
    return sys.stderr.isatty() if flag is None else flag


def bar(flag: bool | None, **options: Any) -> tqdm:  # type: ignore[type-arg]
    return tqdm(file=sys.stderr, disable=not wanted(flag), dynamic_ncols=True, **options)
