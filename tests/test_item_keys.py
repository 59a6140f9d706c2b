"""Results a requester can join: item keys, the upload's answer, item listing, and result rows
that carry each item's key and data (issue 10, part 1). PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import insert, select

from marketplace.db import get_engine, session_scope
from marketplace.models import Aggregate, Item, Slot
from marketplace.services.items import FIRST_TAKEN_KEY
from tests.conftest import bearer, fund, job_body, new_key
from tests.test_api_bad_input import assert_error, count_rows


def _draft(client: FlaskClient, headers: dict[str, str], **overrides: Any) -> int:
    response = client.post("/v1/jobs", json=job_body(**overrides), headers=headers)
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def _upload(client: FlaskClient, headers: dict[str, str], job_id: int, items: list[dict[str, Any]]) -> Any:
    response = client.post(f"/v1/jobs/{job_id}/items", json=items, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_the_upload_answers_ids_and_keys_in_the_order_sent(client: FlaskClient, requester: dict[str, str]) -> None:
    job_id = _draft(client, requester)
    sent = [{"key": f"photo-{i:03d}", "data": {"url": f"u{i}"}} for i in range(40)]
    sent += [{"data": {"url": "no-key"}}, {"key": "g-1", "data": {"url": "gold"}, "answer": "cat"}]
    added = _upload(client, requester, job_id, sent)
    assert (added["added"], added["golden"]) == (42, 1)
    assert set(added) == {"added", "golden", "items"}
    refs = added["items"]
    assert [r["key"] for r in refs[:40]] == [f"photo-{i:03d}" for i in range(40)]
    assert refs[40]["key"] == str(refs[40]["id"])  # no key: its id is its key
    assert refs[41]["key"] == "g-1"
    for ref, item in zip(refs, sent, strict=True):  # each id is the item sent at that position
        stored = client.get(f"/v1/jobs/{job_id}/items/{ref['id']}", headers=requester).get_json()
        assert stored["data"] == item["data"] and stored["key"] == ref["key"]
        assert stored["golden"] == ("answer" in item)
        assert stored["answer"] == item.get("answer")
    ids = [r["id"] for r in refs]
    assert ids != sorted(ids)  # stored shuffled: 40 items in send order by chance is 1 in 40!


def test_ids_say_nothing_about_which_items_are_golden(client: FlaskClient, requester: dict[str, str]) -> None:
    """Golden items uploaded first (or last) do not get the lowest (or highest) ids."""
    job_id = _draft(client, requester)
    golden = [{"key": f"g{i}", "data": {"url": f"g{i}"}, "answer": "cat"} for i in range(30)]
    real = [{"key": f"r{i}", "data": {"url": f"r{i}"}} for i in range(30)]
    refs = _upload(client, requester, job_id, golden + real)["items"]
    ranked = sorted(refs, key=lambda r: r["id"])
    lowest = {r["key"] for r in ranked[:30]}
    # All 30 golden among the lowest 30 ids has probability 1 / C(60, 30) ~ 8e-18 when shuffled.
    assert lowest != {f"g{i}" for i in range(30)}
    assert 5 <= len(lowest & {f"g{i}" for i in range(30)}) <= 25  # ~15 expected; 5 or fewer: p < 1e-5


def test_duplicate_keys_are_a_422_naming_the_index_and_write_nothing(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job_id = _draft(client, requester)
    refs = _upload(client, requester, job_id, [{"key": "a", "data": {}}, {"key": "b", "data": {}}, {"data": {}}])
    keyless_id = refs["items"][2]["id"]
    before = count_rows(app, Item)
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([{"key": "x", "data": {}}, {"key": "y", "data": {}}, {"key": "x", "data": {}}], "2.key"),  # within
        ([{"key": "new", "data": {}}, {"key": "b", "data": {}}], "1.key"),  # against a stored key
        ([{"key": "z", "data": {}}, {"key": str(keyless_id), "data": {}}], "1.key"),  # a stored item's id-key
        ([{"key": "", "data": {}}], "0.key"),
        ([{"key": 7, "data": {}}], "0.key"),
        ([{"key": None, "data": {}}], "0.key"),
        ([{"key": "k" * 201, "data": {}}], "0.key"),
        ([{"key": "a\x00b", "data": {}}], "0.key"),
    ]
    for payload, field in cases:
        body = assert_error(client.post(f"/v1/jobs/{job_id}/items", json=payload, headers=requester), 422, field)
        assert "key" in json.dumps(body)
    assert count_rows(app, Item) == before


def test_the_stored_key_check_looks_keys_up_even_on_a_generic_plan(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    """An IN list of keys, once psycopg had prepared it, ran on a generic plan that compared
    each new key with every stored one (`key = ANY(...)` as a filter): a job's second
    50,000-item upload took 100 s. The check joins the keys to the key index instead."""
    job_id = _draft(client, requester)
    _upload(client, requester, job_id, [{"key": f"k{i}", "data": {}} for i in range(300)])
    sql = FIRST_TAKEN_KEY.text.replace(":keys", "$1").replace(":job", "$2")
    with get_engine(app).connect() as conn:
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE first_taken AS {sql}")
        plan = "\n".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN EXECUTE first_taken('{{zz,k7}}', {job_id})"))
        found = conn.exec_driver_sql(f"EXECUTE first_taken('{{zz,k7,k3}}', {job_id})").scalar()
        conn.exec_driver_sql("DEALLOCATE first_taken")
    assert "ANY" not in plan, plan
    assert found == "k7"  # the first taken key in upload order


def test_a_key_that_is_the_id_a_keyless_item_is_about_to_get_is_refused(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    """A keyless item takes its id as key; a requester's key equal to that id would name two
    items, so the upload is refused (naming the keyless item) and nothing is written."""
    job_id = _draft(client, requester)
    last = _upload(client, requester, job_id, [{"data": {}}])["items"][0]["id"]
    # The next ten ids go to these ten items; the ten after them to the keyless upload below.
    _upload(client, requester, job_id, [{"key": str(last + 11 + n), "data": {}} for n in range(10)])
    before = count_rows(app, Item)
    response = client.post(f"/v1/jobs/{job_id}/items", json=[{"data": {"n": n}} for n in range(10)], headers=requester)
    body = assert_error(response, 422)
    assert set(body["errors"]["json"]) <= {str(n) for n in range(10)}
    assert list(body["errors"]["json"].values())[0] == {"key": [body["message"].split(": ", 1)[1]]}
    assert "give it a key" in body["message"]
    assert count_rows(app, Item) == before


def test_items_list_and_one_item(app: Flask, client: FlaskClient, requester: dict[str, str]) -> None:
    job_id = _draft(client, requester)
    sent = [{"key": f"k{i}", "data": {"i": i}} for i in range(12)] + [
        {"key": "gold", "data": {"i": 99}, "answer": "dog"}
    ]
    refs = {r["key"]: r["id"] for r in _upload(client, requester, job_id, sent)["items"]}
    seen: list[dict[str, Any]] = []
    after, pages = 0, 0
    while True:
        page = client.get(f"/v1/jobs/{job_id}/items?after={after}&limit=5", headers=requester).get_json()
        assert set(page) == {"items", "next_after"}
        seen += page["items"]
        pages += 1
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert pages == 3
    assert [i["id"] for i in seen] == sorted(refs.values())
    by_key = {i["key"]: i for i in seen}
    assert by_key["gold"] == {"id": refs["gold"], "key": "gold", "data": {"i": 99}, "golden": True, "answer": "dog"}
    assert by_key["k3"] == {"id": refs["k3"], "key": "k3", "data": {"i": 3}, "golden": False, "answer": None}
    one = client.get(f"/v1/jobs/{job_id}/items/{refs['k3']}", headers=requester)
    assert one.status_code == 200 and one.get_json() == by_key["k3"]
    other_job = _draft(client, requester)
    assert_error(client.get(f"/v1/jobs/{other_job}/items/{refs['k3']}", headers=requester), 404)
    assert_error(client.get(f"/v1/jobs/{job_id}/items/{2**63 - 1}", headers=requester), 404)
    operator = bearer(new_key(app, "operator", "op"))
    assert client.get(f"/v1/jobs/{job_id}/items/{refs['gold']}", headers=operator).get_json()["answer"] == "dog"
    assert len(client.get(f"/v1/jobs/{job_id}/items", headers=operator).get_json()["items"]) == 13


def test_items_are_walled_off_from_other_requesters_and_from_workers(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job_id = _draft(client, requester)
    item_id = _upload(client, requester, job_id, [{"key": "secret", "data": {"x": 1}, "answer": "cat"}])["items"][0][
        "id"
    ]
    other = bearer(new_key(app, "requester", "other"))
    worker = bearer(new_key(app, "worker", "w"))
    for path in (f"/v1/jobs/{job_id}/items", f"/v1/jobs/{job_id}/items/{item_id}"):
        body = assert_error(client.get(path, headers=other), 404)
        assert "secret" not in json.dumps(body) and "cat" not in json.dumps(body)
        body = assert_error(client.get(path, headers=worker), 403)
        assert "secret" not in json.dumps(body)
        assert_error(client.get(path), 401)
    assert_error(client.post(f"/v1/jobs/{job_id}/items", json=[{"data": {}}], headers=other), 404)
    assert count_rows(app, Item, job_id=job_id) == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=many", "limit"),
        ("after=-1", "after"),
        ("after=x", "after"),
        ("after=9223372036854775808", "after"),
    ],
)
def test_items_query_is_validated(client: FlaskClient, requester: dict[str, str], query: str, field: str) -> None:
    job_id = _draft(client, requester)
    assert_error(client.get(f"/v1/jobs/{job_id}/items?{query}", headers=requester), 422, field)


def _aggregate(app: Flask, job_id: int, labels: dict[int, str]) -> None:
    with session_scope(get_engine(app)) as session:
        session.execute(
            insert(Aggregate),
            [
                {
                    "job_id": job_id,
                    "item_id": item_id,
                    "label": label,
                    "confidence": 0.9,
                    "method": "test",
                    "version": "t",
                    "answers": 3,
                }
                for item_id, label in labels.items()
            ],
        )


def test_every_result_row_carries_the_key_and_data_in_json_csv_and_jsonl(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    """Joined by key alone, the results give back what was uploaded; golden items stay out."""
    job_id = _draft(client, requester)
    truth = {f"img-{i}": ["cat", "dog", "bird"][i % 3] for i in range(9)}
    sent = [{"key": key, "data": {"url": f"https://x/{key}.jpg", "n": i}} for i, key in enumerate(truth)]
    sent.append({"key": "golden-1", "data": {"url": "https://x/g.jpg"}, "answer": "cat"})
    refs = _upload(client, requester, job_id, sent)["items"]
    _aggregate(app, job_id, {r["id"]: truth[r["key"]] for r in refs if r["key"] in truth})
    rows = client.get(f"/v1/jobs/{job_id}/results?limit=1000", headers=requester).get_json()["results"]
    assert {r["key"]: r["label"] for r in rows} == truth
    assert all(r["data"] == {"url": f"https://x/{r['key']}.jpg", "n": int(r["key"][4:])} for r in rows)

    text = client.get(f"/v1/jobs/{job_id}/results?format=csv", headers=requester).get_data(as_text=True)
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames is not None and reader.fieldnames[:3] == ["item_id", "key", "data"]
    csv_rows = list(reader)
    assert {r["key"]: r["label"] for r in csv_rows} == truth
    assert all(json.loads(r["data"])["url"].endswith(f"/{r['key']}.jpg") for r in csv_rows)

    text = client.get(f"/v1/jobs/{job_id}/results?format=jsonl", headers=requester).get_data(as_text=True)
    lines = [json.loads(line) for line in text.splitlines()]
    assert {r["key"]: (r["label"], r["data"]["n"]) for r in lines} == {
        key: (label, i) for i, (key, label) in enumerate(truth.items())
    }


def test_json_lines_uploads_take_keys_and_name_the_bad_line(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job_id = _draft(client, requester)
    url = f"/v1/jobs/{job_id}/items"
    lines = ['{"key": "a", "data": {"n": 1}}', "", '{"key": "b", "data": {"n": 2}, "answer": "cat"}', '{"data": {}}']
    added = client.post(url, data="\n".join(lines) + "\n", content_type="application/x-ndjson", headers=requester)
    assert added.status_code == 201, added.get_json()
    assert [r["key"] for r in added.get_json()["items"][:2]] == ["a", "b"]
    bad = '{"key": "c", "data": {}}\n{"key": "d", "data": {}}\n\n{"key": "e", "data": {}\n'
    body = assert_error(
        client.post(url, data=bad, content_type="application/x-ndjson", headers=requester), 400, "_body"
    )
    assert "line 4" in body["message"] and "line 4" in json.dumps(body["errors"])
    dup = '{"key": "c", "data": {}}\n\n{"key": "a", "data": {}}\n'
    body = assert_error(
        client.post(url, data=dup, content_type="application/x-ndjson", headers=requester), 422, "1.key"
    )
    bad_item = '{"key": "c", "data": {}}\n\n\n{"key": "d", "data": "not an object"}\n'
    body = assert_error(
        client.post(url, data=bad_item, content_type="application/x-ndjson", headers=requester), 422, "1.data"
    )
    assert "line 4" in body["message"]
    assert count_rows(app, Item, job_id=job_id) == 3


def test_a_running_job_pools_only_the_real_items_of_a_keyed_upload(
    app: Flask, client: FlaskClient, requester: dict[str, str]
) -> None:
    job_id = _draft(client, requester, overlap=2)
    _upload(client, requester, job_id, [{"key": "first", "data": {}}])
    fund(client, requester, 100_000)
    assert client.post(f"/v1/jobs/{job_id}/launch", headers=requester).status_code == 200
    refs = _upload(
        client,
        requester,
        job_id,
        [{"key": "late", "data": {}}, {"key": "late-gold", "data": {}, "answer": "cat"}],
    )["items"]
    with session_scope(get_engine(app)) as session:
        pooled = set(session.execute(select(Slot.item_id).where(Slot.job_id == job_id)).scalars())
    late = {r["key"]: r["id"] for r in refs}
    assert late["late"] in pooled and late["late-gold"] not in pooled and len(pooled) == 2
