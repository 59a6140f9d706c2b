"""Schemathesis against the OpenAPI document, with every role's key: no 5xx, and every response
that the document describes matches its schema. Bounded (a few examples per operation and
role) to stay within CI's time; run with more examples by `FUZZ_EXAMPLES=200`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from redis import Redis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from marketplace.db import dispose
from tests.conftest import bearer, make_app, new_key, post_job

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))


@pytest.fixture
def fuzz_app(database_url: str, redis: Redis) -> Iterator[Flask]:
    app = make_app(database_url, RATE_LIMITS=False)  # the fuzzer is one client sending hundreds of requests
    client = app.test_client()
    keys = {role: new_key(app, role) for role in ("requester", "worker", "operator")}
    post_job(client, bearer(keys["requester"]), items=6, golden=2)  # something to find at id 1
    app.config["FUZZ_KEYS"] = keys
    yield app
    dispose(app)


def test_no_server_error_and_documented_shapes(fuzz_app: Flask) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    keys = fuzz_app.config["FUZZ_KEYS"].values()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            for key in keys:
                case.call_and_validate(
                    headers={"Authorization": f"Bearer {key}"},
                    checks=[not_a_server_error, response_schema_conformance],
                )

        fuzz()
