"""Items to upload, from an iterable of dicts, a JSON Lines file, a JSON array file or a CSV file.

Each item is what `POST /v1/jobs/{id}/items` takes: `{"data": {...}}`, with `answer` for a
golden item (and `key`, the requester's own id, where the server has it). A CSV row becomes
an item too: its `answer` and `key` columns are those fields, every other column goes into
`data`; a cell that is a plain decimal number (`640`, `0.5`, not `007`) becomes a number, and
an empty cell is left out.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Sized
from itertools import islice
from pathlib import Path
from typing import Any

from marketplace.client.errors import ClientError

Item = dict[str, Any]
ITEM_FIELDS = ("answer", "key")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def open_items(source: Iterable[Item] | str | Path) -> tuple[Iterator[Item], int | None]:
    """The items of `source` and how many there are (None when an iterable cannot tell)."""
    if isinstance(source, str | Path):
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return _csv_items(path), _csv_count(path)
        if suffix in JSONL_SUFFIXES:
            return _jsonl_items(path), _jsonl_count(path)
        if suffix == ".json":
            items = _json_items(path)
            return iter(items), len(items)
        raise ClientError(f"{path}: give a .jsonl, .ndjson, .json or .csv file")
    total = len(source) if isinstance(source, Sized) else None
    return iter(source), total


def batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while batch := list(islice(items, size)):
        yield batch


def _jsonl_items(path: Path) -> Iterator[Item]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as error:
                raise ClientError(f"{path}:{number}: not valid JSON: {error}") from None
            if not isinstance(item, dict):
                raise ClientError(f'{path}:{number}: an item is a JSON object, e.g. {{"data": {{...}}}}')
            yield item


def _jsonl_count(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def _json_items(path: Path) -> list[Item]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ClientError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ClientError(f"{path}: expected a JSON array of item objects")
    return items


def _csv_items(path: Path) -> Iterator[Item]:
    with path.open(newline="", encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            item: Item = {"data": {}}
            for column, cell in row.items():
                if column is None or cell is None or cell == "":
                    continue
                if column in ITEM_FIELDS:
                    item[column] = cell
                else:
                    item["data"][column] = _cell(cell)
            yield item


def _csv_count(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as rows:
        return sum(1 for _ in csv.DictReader(rows))


def _cell(text: str) -> Any:
    if _NUMBER.fullmatch(text):
        number = float(text)
        return int(text) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    return text
