"""The Python client's own rules, against a scripted transport: typed errors, what is retried
and what is not, idempotency keys, and that importing it pulls in none of the server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from marketplace.client import (
    Client,
    ConnectionFailed,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    Unprocessable,
    UploadError,
)

SERVER_MODULES = ("flask", "flask_smorest", "sqlalchemy", "sqlmodel", "psycopg", "marshmallow", "werkzeug", "rq")


def test_importing_the_client_pulls_in_no_server_code() -> None:
    probe = "import json, sys, marketplace.client; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True).stdout)
    roots = {name.split(".")[0] for name in loaded}
    assert not roots & set(SERVER_MODULES), roots & set(SERVER_MODULES)
    assert "pandas" not in roots and "redis" not in roots  # pandas only inside results_frame
    assert {"httpx", "tqdm"} <= roots


Handler = Callable[[httpx.Request], httpx.Response]


def scripted(*steps: httpx.Response | Exception) -> tuple[Client, list[httpx.Request]]:
    """A client whose transport answers with `steps` in order (an exception is raised instead)."""
    seen: list[httpx.Request] = []
    queue = list(steps)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = queue.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    return Client("http://api.test", "mk_secret", backoff=0, transport=httpx.MockTransport(handle)), seen


def error(status: int, message: str, errors: object = None) -> httpx.Response:
    body = {"code": status, "status": "x", "message": message, **({"errors": errors} if errors else {})}
    return httpx.Response(status, json=body)


def test_an_error_answer_is_a_typed_exception_with_the_servers_fields() -> None:
    fields = {"json": {"answers": {"0": {"label": ["Must be one of: cat, dog."]}}}}
    client, _ = scripted(error(422, "invalid answers", fields), error(404, "job 9 not found"), error(403, "no"))
    with pytest.raises(Unprocessable) as refused:
        client.create_job({})
    assert (refused.value.status, refused.value.code, refused.value.message) == (422, 422, "invalid answers")
    assert refused.value.errors == fields
    with pytest.raises(NotFound, match="job 9 not found"):
        client.job(9)
    with pytest.raises(Forbidden):
        client.lease()


def test_reads_are_retried_on_5xx_and_connection_errors() -> None:
    job = {"id": 1, "state": "running"}
    client, seen = scripted(
        error(503, "busy"), httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.Response(200, json=job)
    )
    assert client.job(1) == job
    assert len(seen) == 4


def test_a_lease_is_retried_with_one_idempotency_key() -> None:
    """A lease whose answer was lost is asked again under the same key (the server then hands
    back the task it leased: tests/test_pool_limits.py), never as a second, different lease."""
    client, seen = scripted(httpx.ReadTimeout("lost"), error(503, "busy"), lease_answer())
    task = client.lease()
    assert task is not None and task.id == 7
    keys = {request.headers.get("Idempotency-Key") for request in seen}
    assert len(seen) == 3 and len(keys) == 1 and all(keys)
    client, seen = scripted(httpx.Response(204), httpx.Response(204))
    assert client.lease() is None and client.lease() is None
    assert seen[0].headers["Idempotency-Key"] != seen[1].headers["Idempotency-Key"]  # one key a lease
    client, seen = scripted(*[httpx.ReadTimeout("lost")] * 5)
    with pytest.raises(ConnectionFailed):
        client.lease()
    assert len(seen) == 5 and len({request.headers["Idempotency-Key"] for request in seen}) == 1


def test_any_call_is_repeated_when_it_never_left() -> None:
    client, seen = scripted(httpx.ConnectError("refused"), httpx.Response(204))
    assert client.lease() is None
    assert len(seen) == 2


def test_retries_stop_after_the_limit() -> None:
    client, seen = scripted(*[error(502, "bad gateway")] * 5)
    with pytest.raises(ServerError):
        client.job(1)
    assert len(seen) == 5  # the first try and 4 retries


def test_a_429_is_retried_after_the_servers_delay() -> None:
    limited = httpx.Response(429, json={"code": 429, "message": "slow down"}, headers={"Retry-After": "0"})
    client, seen = scripted(limited, httpx.Response(204))
    assert client.lease() is None and len(seen) == 2
    client, seen = scripted(*[limited] * 5)
    with pytest.raises(RateLimited):
        client.lease()


def lease_answer() -> httpx.Response:
    task = {
        "id": 7,
        "kind": "task",
        "state": "leased",
        "expires_at": "2099-01-01T00:00:00+00:00",
        "job": {"id": 1, "title": "t", "instructions": "i", "annotation": {"type": "classification", "labels": ["a"]}},
        "items": [{"id": 11, "data": {}}, {"id": 12, "data": {}}],
    }
    return httpx.Response(201, json=task)


def test_a_submit_carries_one_idempotency_key_through_its_retries() -> None:
    submitted = httpx.Response(200, json={"id": 7, "state": "submitted", "answers": 2})
    client, seen = scripted(lease_answer(), httpx.ReadTimeout("lost"), error(503, "busy"), submitted)
    task = client.lease()
    assert task is not None
    assert task.submit({11: "a", 12: "a"})["state"] == "submitted"
    keys = {request.headers["Idempotency-Key"] for request in seen[1:]}
    assert len(seen) == 4 and len(keys) == 1 and all(keys)
    assert json.loads(seen[-1].content) == {"answers": [{"item_id": 11, "label": "a"}, {"item_id": 12, "label": "a"}]}


def test_money_calls_always_carry_an_idempotency_key() -> None:
    funded = httpx.Response(201, json={"balance_cents": 10})
    run = httpx.Response(201, json={"id": 1, "state": "pending"})
    client, seen = scripted(funded, funded, run, httpx.ReadTimeout("lost"), run)
    client.fund(3, 10)
    client.fund(3, 10, idempotency_key="deposit-42")
    client.start_payout_run()
    client.start_payout_run(idempotency_key="run-1")
    generated = seen[0].headers["Idempotency-Key"]
    assert generated and seen[1].headers["Idempotency-Key"] == "deposit-42"
    assert seen[2].headers["Idempotency-Key"] not in (generated, "")
    assert seen[3].headers["Idempotency-Key"] == seen[4].headers["Idempotency-Key"] == "run-1"  # retried, same key


def test_the_key_is_sent_as_a_bearer_and_never_shown() -> None:
    client, seen = scripted(*[error(500, "boom")] * 5)
    with pytest.raises(ServerError) as failed:
        client.me()
    assert seen[0].headers["Authorization"] == "Bearer mk_secret"
    assert "mk_secret" not in repr(client) + str(failed.value)


def test_an_upload_names_the_item_to_restart_from(tmp_path: Path) -> None:
    stored = httpx.Response(201, json={"added": 2, "golden": 0})
    refused = error(422, "invalid items", {"json": {"1": {"answer": ["not one of the job's labels"]}}})
    client, seen = scripted(stored, refused)
    items = [{"data": {"n": n}} for n in range(6)]
    with pytest.raises(UploadError) as failed:
        client.add_items(1, items, batch_size=2)
    assert failed.value.start == 2 and not failed.value.maybe_stored
    assert failed.value.item_errors == {3: {"answer": ["not one of the job's labels"]}}
    assert "item 3" in str(failed.value) and "start=2" in str(failed.value)
    client, seen = scripted(stored, stored)
    assert client.add_items(1, items, batch_size=2, start=2).added == 4
    assert [json.loads(r.content)[0]["data"]["n"] for r in seen] == [2, 4]


def test_an_upload_cut_after_sending_says_the_batch_may_be_stored() -> None:
    client, _ = scripted(httpx.Response(201, json={"added": 2, "golden": 0}), httpx.ReadTimeout("lost"))
    with pytest.raises(UploadError) as failed:
        client.add_items(1, [{"data": {}}] * 4, batch_size=2)
    assert failed.value.start == 2 and failed.value.maybe_stored
    assert "start=2 or start=4" in str(failed.value)


def test_items_from_csv_and_json_lines(tmp_path: Path) -> None:
    csv_file = tmp_path / "items.csv"
    csv_file.write_text("image_url,width,height,answer,code\nhttp://x/a.jpg,640,480,cat,007\nhttp://x/b.jpg,1.5,,,12\n")
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text('{"data": {"text": "hi"}}\n\n{"data": {"text": "there"}, "answer": "b"}\n')
    stored = httpx.Response(201, json={"added": 2, "golden": 1})
    client, seen = scripted(stored, stored)
    client.add_items(1, csv_file)
    client.add_items(1, jsonl)
    assert json.loads(seen[0].content) == [
        {"data": {"image_url": "http://x/a.jpg", "width": 640, "height": 480, "code": "007"}, "answer": "cat"},
        {"data": {"image_url": "http://x/b.jpg", "width": 1.5, "code": 12}},
    ]
    assert json.loads(seen[1].content) == [{"data": {"text": "hi"}}, {"data": {"text": "there"}, "answer": "b"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"data": {}}\n{"data": \n')
    with pytest.raises(Exception, match="bad.jsonl:2: not valid JSON"):
        client.add_items(1, bad)


def test_an_export_asks_for_rle_masks_and_a_refusal_names_them(tmp_path: Path) -> None:
    client, seen = scripted(
        httpx.Response(200, content=b'{"annotations": []}'),
        error(422, "masks: only for format=coco of a polygon job", {"json": {"masks": ["only for"]}}),
    )
    written = client.export(7, "coco", tmp_path / "masks.json", masks="rle")
    assert written.read_bytes() == b'{"annotations": []}'
    assert seen[0].url.path == "/v1/jobs/7/results" and dict(seen[0].url.params) == {"format": "coco", "masks": "rle"}
    with pytest.raises(Unprocessable, match="masks: only for"):
        client.export(7, "json", tmp_path / "rows.json", masks="rle")  # sent as asked: the server says why not
    assert dict(seen[1].url.params) == {"format": "json", "masks": "rle"}
    assert not (tmp_path / "rows.json").exists()
