"""Requesters' calls: post a job, upload items, launch it, wait for it, read its results."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marketplace.client.errors import ApiError, ClientError, ConnectionFailed, UploadError, WaitTimeout
from marketplace.client.items import Item, batches, open_items
from marketplace.client.progress import bar
from marketplace.client.transport import NOT_SENT, Transport

if TYPE_CHECKING:
    import pandas as pd

FINAL_STATES = ("completed", "cancelled")
RESULTS_PAGE = 1000


@dataclass
class Upload:
    """What `add_items` stored: counts summed over its batches (and ids when the server lists them)."""

    added: int = 0
    golden: int = 0
    batches: int = 0
    ids: list[int] = field(default_factory=list)

    def count(self, answer: dict[str, Any]) -> None:
        self.added += int(answer.get("added", 0))
        self.golden += int(answer.get("golden", 0))
        self.batches += 1
        self.ids.extend(answer.get("ids") or [])


class RequesterCalls:
    _http: Transport
    _progress: bool | None

    def _show(self, progress: bool | None) -> bool | None:
        return self._progress if progress is None else progress

    def create_job(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Create a draft job from the API's job body (title, instructions, annotation, ...)."""
        return self._http.request("POST", "/v1/jobs", json=spec).json()  # type: ignore[no-any-return]

    def job(self, job_id: int) -> dict[str, Any]:
        """The job with its `progress` and `quality`."""
        return self._http.request("GET", f"/v1/jobs/{job_id}").json()  # type: ignore[no-any-return]

    def jobs(self) -> list[dict[str, Any]]:
        return self._http.request("GET", "/v1/jobs").json()  # type: ignore[no-any-return]

    def tune_job(self, job_id: int, **settings: Any) -> dict[str, Any]:
        """Change settings of a job (`overlap`, `golden_ratio`, `budget_cents`, ...), also while it runs."""
        return self._http.request("PATCH", f"/v1/jobs/{job_id}", json=settings).json()  # type: ignore[no-any-return]

    def launch(self, job_id: int) -> dict[str, Any]:
        return self._state(job_id, "launch")

    def pause(self, job_id: int) -> dict[str, Any]:
        return self._state(job_id, "pause")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._state(job_id, "cancel")

    def _state(self, job_id: int, action: str) -> dict[str, Any]:
        return self._http.request("POST", f"/v1/jobs/{job_id}/{action}").json()  # type: ignore[no-any-return]

    def spend(self, job_id: int) -> dict[str, Any]:
        return self._http.request("GET", f"/v1/jobs/{job_id}/spend").json()  # type: ignore[no-any-return]

    def aggregate(self, job_id: int) -> dict[str, Any]:
        """Queue an aggregation now (it runs in the background)."""
        return self._http.request("POST", f"/v1/jobs/{job_id}/aggregate").json()  # type: ignore[no-any-return]

    def add_items(
        self,
        job_id: int,
        items: Iterable[Item] | str | Path,
        *,
        batch_size: int = 1000,
        start: int = 0,
        progress: bool | None = None,
    ) -> Upload:
        """Upload items in batches of `batch_size` (each batch one transaction on the server).

        `items` is an iterable of item dicts or the path of a `.jsonl`/`.ndjson`, `.json` or
        `.csv` file (see `marketplace.client.items`). A failed batch raises `UploadError`, whose
        `start` is the index to pass back as `start=` to resume: items before it are stored.
        A bar counts items on stderr (default: when stderr is a terminal).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        stream, total = open_items(items)
        for _ in range(start):
            next(stream, None)
        upload = Upload()
        index = start
        with bar(self._show(progress), total=total, initial=start, unit="item", desc=f"job {job_id} items") as shown:
            for batch in batches(stream, batch_size):
                try:
                    answer = self._http.request("POST", f"/v1/jobs/{job_id}/items", json=batch)
                except ApiError as error:
                    raise UploadError(index, len(batch), error, item_errors=_item_errors(error, index)) from error
                except ConnectionFailed as error:
                    never_sent = isinstance(error.__cause__, NOT_SENT)
                    raise UploadError(index, len(batch), error, maybe_stored=not never_sent) from error
                upload.count(answer.json())
                index += len(batch)
                shown.update(len(batch))
        return upload

    def wait(
        self,
        job_id: int,
        *,
        poll_seconds: float = 2.0,
        timeout: float | None = None,
        aggregated: bool = True,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """Block until the job is completed (or cancelled) and, with `aggregated`, its last
        aggregation used every answer; a bar shows answers collected of wanted, with an ETA.
        Returns the job as last read; `WaitTimeout` after `timeout` seconds."""
        started = time.monotonic()
        job = self.job(job_id)
        seen, wanted = job["progress"]["answers"], job["progress"]["answers_wanted"]
        with bar(self._show(progress), total=wanted, initial=seen, unit="answer", desc=f"job {job_id}") as shown:
            while True:
                figures = job["progress"]
                shown.total = figures["answers_wanted"]
                if figures["answers"] >= seen:
                    shown.update(figures["answers"] - seen)
                else:  # answers excluded after a ban: the count went down
                    shown.n = figures["answers"]
                seen = figures["answers"]
                shown.set_postfix(state=job["state"], refresh=True)
                if job["state"] == "draft":
                    raise ClientError(f"job {job_id} is a draft: launch it before waiting for it")
                if job["state"] in FINAL_STATES and (
                    job["state"] == "cancelled" or not aggregated or _aggregated(figures)
                ):
                    return job
                if timeout is not None and time.monotonic() - started > timeout:
                    raise WaitTimeout(f"job {job_id} is {job['state']} after {timeout:g} s", job)
                time.sleep(poll_seconds)
                job = self.job(job_id)

    def results(self, job_id: int, *, page_size: int = RESULTS_PAGE) -> Iterator[dict[str, Any]]:
        """Every result row of the job (one per real item), fetched a page at a time."""
        after = 0
        while True:
            page = self._http.request(
                "GET", f"/v1/jobs/{job_id}/results", params={"after": after, "limit": page_size}
            ).json()
            yield from page["results"]
            if page.get("next_after") is None:
                return
            after = page["next_after"]

    def results_frame(self, job_id: int) -> pd.DataFrame:
        """The results as a pandas DataFrame, one row per real item (pandas is imported here only)."""
        import pandas as pd

        return pd.DataFrame.from_records(list(self.results(job_id)))

    def export(
        self,
        job_id: int,
        format: str,  # noqa: A002 - the API's name
        path: str | Path,
        masks: str | None = None,
    ) -> Path:
        """Download the job's results in an export `format` the server offers (`csv`, `jsonl`,
        ...) into `path`; `json` writes every result row as one JSON array. `masks="rle"`: a
        polygon job's COCO segmentations as RLE masks (the server refuses it elsewhere)."""
        destination = Path(path)
        if format != "json" or masks is not None:
            params = {"format": format, **({"masks": masks} if masks is not None else {})}
            return self._http.download(f"/v1/jobs/{job_id}/results", destination, params)
        partial = destination.with_name(f".{destination.name}.partial")
        try:
            with partial.open("w", encoding="utf-8") as out:
                out.write("[")
                for number, row in enumerate(self.results(job_id)):
                    out.write(("," if number else "") + "\n" + json.dumps(row))
                out.write("\n]\n")
            partial.replace(destination)
        finally:
            partial.unlink(missing_ok=True)
        return destination


def _aggregated(figures: dict[str, Any]) -> bool:
    last = figures.get("last_aggregation")
    return last is not None and last["answers_used"] >= figures["answers"] + figures.get("golden_answers", 0)


def _item_errors(error: ApiError, offset: int) -> dict[int, Any]:
    """The server keys a refused item by its index in the batch; this keys it by its index in the source."""
    errors = error.errors.get("json") if isinstance(error.errors, dict) else None
    if not isinstance(errors, dict):
        return {}
    return {offset + int(k): v for k, v in errors.items() if str(k).isdigit()}
