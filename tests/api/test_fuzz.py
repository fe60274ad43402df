"""The API fuzzed from its own OpenAPI schema (schemathesis), open and with keys on.

Every operation but the event stream (it is open-ended; tests/api covers it) gets
generated requests, valid and not. Checks: no 5xx, status codes, content types, headers
and bodies as the schema documents them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi import checks as oa_checks

from pipelines.embedded.live import LiveState
from pipelines.records.approvals import Approvals
from pipelines.records.audit import AuditStore, sqlite_url
from pipelines.records.feedback import FeedbackStore
from predictor.risk import RiskModel
from serve.app import create_app
from serve.auth import KeyStore
from serve.gates import Security
from tests.api.support import build_live
from tests.factories import SimStream


def no_500(_ctx: object, response: object, case: schemathesis.Case) -> None:
    """No unexpected failure (a 503 from /readyz or a 501 are answers, and documented:
    status_code_conformance holds them to the schema)."""
    status = getattr(response, "status_code", 0)
    assert status != 500, f"500 from {case.method} {case.formatted_path}"


CHECKS = [
    no_500,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_headers_conformance,
    oa_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_live(failure_stream: SimStream, small_model: RiskModel) -> LiveState:
    return build_live(failure_stream, small_model)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def open_app(fuzz_live: LiveState, fuzz_dir: Path) -> object:
    return create_app(
        fuzz_live,
        max_body_bytes=64 * 1024,
        feedback=FeedbackStore(fuzz_dir / "open.sqlite"),
        audit=AuditStore(sqlite_url(fuzz_dir / "audit.sqlite")),
        approvals=Approvals(fuzz_live),
    )


@pytest.fixture(scope="module")
def admin_key(fuzz_dir: Path) -> tuple[KeyStore, str]:
    store = KeyStore(fuzz_dir / "keys.json")
    return store, store.create("fuzzer", "admin")[1]


@pytest.fixture(scope="module")
def keyed_app(fuzz_live: LiveState, fuzz_dir: Path, admin_key: tuple[KeyStore, str]) -> object:
    sec = Security(keys=admin_key[0], allowed_hosts=["testserver"], rate_per_s=1e6, burst=10**6)
    return create_app(
        fuzz_live,
        max_body_bytes=64 * 1024,
        security=sec,
        feedback=FeedbackStore(fuzz_dir / "keyed.sqlite"),
        audit=AuditStore(sqlite_url(fuzz_dir / "audit.sqlite")),
        approvals=Approvals(fuzz_live),
    )


def fuzz(app: object, headers: dict[str, str] | None = None, examples: int = 25) -> list[str]:
    """Run every operation's generated cases against ``app``; returns operations run."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ran = []
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path == "/v1/recommendations/stream":
            continue

        @given(case=op.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()
        ran.append(f"{op.method.upper()} {op.path}")
    return ran


def test_fuzz_open(open_app: object) -> None:
    ran = fuzz(open_app)
    assert {"POST /v1/score", "POST /v1/feedback", "GET /v1/systems/{system}"} <= set(ran)
    assert {"GET /v1/audit", "POST /v1/recommendations/{recommendation_id}/approve"} <= set(ran)


def test_fuzz_with_keys(keyed_app: object, admin_key: tuple[KeyStore, str]) -> None:
    ran = fuzz(keyed_app, {"Authorization": f"Bearer {admin_key[1]}"})
    assert "GET /v1/keys" in ran


def test_fuzz_without_a_key_is_refused(keyed_app: object) -> None:
    """With keys on and none sent, every answer is still a documented one (401 mostly)."""
    fuzz(keyed_app, examples=5)
