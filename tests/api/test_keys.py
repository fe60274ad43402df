"""Keys, roles, rate limits, hosts, CORS; feedback, history, alerts, local docs and console."""

from __future__ import annotations

import logging
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipelines.cli.main import app as cli
from pipelines.embedded.live import LiveState
from pipelines.records.feedback import FeedbackStore
from pipelines.records.keys import security_for
from pipelines.settings import Settings
from predictor.errors import ConfigError, ValidationError
from predictor.risk import RiskModel
from serve.app import create_app
from serve.auth import KeyStore
from serve.gates import Security
from tests.api.support import build_live
from tests.factories import SimStream

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def live(failure_stream: SimStream, small_model: RiskModel) -> LiveState:
    return build_live(failure_stream, small_model, max_batch=500, history_step_s=60.0)


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys.json", recheck_s=0.0)


@pytest.fixture
def keys(store: KeyStore) -> dict[str, str]:
    return {role: store.create(f"{role}-key", role)[1] for role in ("read", "operate", "admin")}


@pytest.fixture
def guarded(live: LiveState, store: KeyStore, tmp_path: Path) -> Iterator[TestClient]:
    sec = Security(
        keys=store,
        allowed_hosts=["testserver", "localhost"],
        cors_origins=["https://ops.example.com"],
        rate_per_s=0.01,  # no refill within a test: the bucket is the burst
        burst=5,
    )
    app = create_app(live, security=sec, feedback=FeedbackStore(tmp_path / "fb.sqlite"))
    with TestClient(app) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- the key store ----------------------------------------------------------------------
def test_keys_are_hashed_at_rest(store: KeyStore) -> None:
    record, secret = store.create("orchestrator", "read")
    text = store.path.read_text()
    assert secret not in text and secret.rsplit("_", 1)[1] not in text
    assert record.digest in text and record.salt in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.verify(secret) == record
    assert store.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.verify("pcv_000000000000_" + "x" * 43) is None
    assert store.verify("") is None


def test_same_secret_other_salt_other_digest(store: KeyStore) -> None:
    a, _ = store.create("a", "read")
    b, _ = store.create("b", "read")
    assert a.salt != b.salt and a.digest != b.digest


def test_revoked_key_fails_in_a_running_store(store: KeyStore) -> None:
    record, secret = store.create("sre", "operate")
    other = KeyStore(store.path, recheck_s=0.0)  # another process's view of the file
    assert other.verify(secret) is not None
    store.revoke(record.id)
    assert other.verify(secret) is None
    assert [k.revoked_at is not None for k in other.keys()] == [True]


def test_bad_role_and_unknown_id(store: KeyStore) -> None:
    with pytest.raises(ValidationError):
        store.create("x", "root")
    with pytest.raises(ValidationError):
        store.revoke("nope")


# -- 401 / 403 / 429 ----------------------------------------------------------------------
def test_no_key_is_401_json(guarded: TestClient) -> None:
    r = guarded.get("/v1/systems")
    assert r.status_code == 401
    body = r.json()
    assert body["error"] == "unauthorized" and body["reason"] == "missing_key"
    assert body["request_id"] == r.headers["x-request-id"]
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_wrong_key_is_401(guarded: TestClient, keys: dict[str, str]) -> None:
    r = guarded.get("/v1/systems", headers=bearer(keys["read"] + "x"))
    assert r.status_code == 401 and r.json()["reason"] == "invalid_key"
    r = guarded.get("/v1/systems", headers={"X-API-Key": "pcv_nonsense"})
    assert r.status_code == 401


def test_read_key_reads(guarded: TestClient, keys: dict[str, str]) -> None:
    assert guarded.get("/v1/systems", headers=bearer(keys["read"])).status_code == 200
    assert guarded.get("/v1/systems", headers={"X-API-Key": keys["read"]}).status_code == 200
    assert guarded.get("/v1/recommendations", headers=bearer(keys["read"])).status_code == 200


def test_roles(guarded: TestClient, keys: dict[str, str], live: LiveState) -> None:
    rec = live.recommendations(limit=1)[0]
    fb = {
        "recommendation_id": rec["recommendation_id"],
        "system": rec["system"],
        "component": rec["component"],
        "verdict": "false_alarm",
    }
    r = guarded.post("/v1/feedback", json=fb, headers=bearer(keys["read"]))
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden" and "operate" in r.json()["detail"]
    r = guarded.post("/v1/feedback", json=fb, headers=bearer(keys["operate"]))
    assert r.status_code == 201, r.text
    assert r.json()["key_id"] == keys["operate"].split("_")[1]
    assert guarded.get("/v1/keys", headers=bearer(keys["operate"])).status_code == 403
    r = guarded.get("/v1/keys", headers=bearer(keys["admin"]))
    assert r.status_code == 200
    assert {k["role"] for k in r.json()} == {"read", "operate", "admin"}
    assert all("digest" not in k and "salt" not in k for k in r.json())
    # admin can do what operate can
    assert guarded.post("/v1/feedback", json=fb, headers=bearer(keys["admin"])).status_code == 201


def test_probes_docs_console_are_public(guarded: TestClient) -> None:
    for path in ("/healthz", "/openapi.json", "/docs", "/console", "/static/console.js"):
        assert guarded.get(path).status_code in (200, 503), path
    assert guarded.get("/readyz").status_code in (200, 503)


def test_rate_limit_429_with_retry_after(guarded: TestClient, keys: dict[str, str]) -> None:
    codes = [guarded.get("/healthz").status_code for _ in range(3)] + [
        guarded.get("/v1/status", headers=bearer(keys["read"])).status_code for _ in range(8)
    ]
    assert codes[:3] == [200, 200, 200]  # probes are not limited
    assert codes[3:8] == [200] * 5 and codes[8:] == [429] * 3
    r = guarded.get("/v1/status", headers=bearer(keys["read"]))
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert int(r.headers["retry-after"]) >= 1
    # another key has its own bucket
    assert guarded.get("/v1/status", headers=bearer(keys["operate"])).status_code == 200


def test_bad_host_is_400_json(guarded: TestClient) -> None:
    r = guarded.get("/healthz", headers={"Host": "evil.example.net"})
    assert r.status_code == 400 and r.json()["error"] == "bad_host"
    assert guarded.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200


def test_cors(guarded: TestClient) -> None:
    pre = {
        "Origin": "https://ops.example.com",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    r = guarded.options("/v1/systems", headers=pre)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://ops.example.com"
    r = guarded.options("/v1/systems", headers={**pre, "Origin": "https://evil.example.net"})
    assert "access-control-allow-origin" not in r.headers


def test_no_secret_in_logs(
    guarded: TestClient, keys: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    guarded.get("/v1/systems", headers=bearer(keys["read"]))
    guarded.get("/v1/systems", headers=bearer(keys["read"] + "x"))
    guarded.get("/v1/nope/500", headers=bearer(keys["admin"]))
    text = caplog.text
    for key in keys.values():
        assert key not in text and key.split("_", 2)[2] not in text


def test_openapi_documents_the_key_scheme(guarded: TestClient) -> None:
    spec = guarded.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    op = spec["paths"]["/v1/systems"]["get"]
    assert op["security"] == [{"apiKey": []}] and {"401", "403", "429"} <= set(op["responses"])
    assert "security" not in spec["paths"]["/healthz"]["get"]


# -- who may listen where ---------------------------------------------------------------
def test_open_only_on_loopback(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    sec, mode = security_for(settings, "127.0.0.1")
    assert sec.keys is None and mode.startswith("open")
    with pytest.raises(ConfigError, match="without API keys"):
        security_for(settings, "0.0.0.0")
    KeyStore(tmp_path / "api-keys.json").create("orchestrator", "read")
    sec, mode = security_for(settings, "0.0.0.0")
    assert sec.keys is not None and mode.startswith("API keys required")
    sec, _ = security_for(settings, "127.0.0.1")
    assert sec.keys is not None  # keys configured: required on loopback too


def test_keys_cli(tmp_path: Path) -> None:
    run = CliRunner()
    args = ["--state-dir", str(tmp_path)]
    r = run.invoke(cli, ["keys", "create", "orch-1", "--role", "read", *args])
    assert r.exit_code == 0, r.output
    secret = r.output.strip().splitlines()[-1]
    assert secret.startswith("pcv_")
    key_id = secret.split("_")[1]
    listed = run.invoke(cli, ["keys", "list", *args])
    assert key_id in listed.output and "active" in listed.output and secret not in listed.output
    assert run.invoke(cli, ["keys", "revoke", key_id, *args]).exit_code == 0
    assert "revoked" in run.invoke(cli, ["keys", "list", *args]).output
    assert KeyStore(tmp_path / "api-keys.json").verify(secret) is None
    bad = run.invoke(cli, ["keys", "create", "x", "--role", "root", *args])
    assert bad.exit_code != 0


# -- feedback, history, alerts, docs, console (open API) ---------------------------------
@pytest.fixture
def open_client(live: LiveState, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(live, feedback=FeedbackStore(tmp_path / "fb.sqlite"))) as c:
        yield c


def test_feedback_is_durable(open_client: TestClient, live: LiveState, tmp_path: Path) -> None:
    rec = live.recommendations(limit=1)[0]
    body = {
        "recommendation_id": rec["recommendation_id"],
        "system": rec["system"],
        "verdict": "acknowledged",
        "note": "on it",
    }
    r = open_client.post("/v1/feedback", json=body)
    assert r.status_code == 201 and r.json()["key_id"] is None
    assert open_client.post("/v1/feedback", json={**body, "verdict": "maybe"}).status_code == 422
    rows = FeedbackStore(tmp_path / "fb.sqlite").list()  # a fresh connection: on disk
    assert [(x["recommendation_id"], x["verdict"], x["note"]) for x in rows] == [
        (rec["recommendation_id"], "acknowledged", "on it")
    ]
    assert open_client.get("/v1/feedback").json()[0]["id"] == rows[0]["id"]
    assert open_client.get("/v1/feedback", params={"system": "nope"}).json() == []


def test_feedback_without_store_is_501(live: LiveState) -> None:
    with TestClient(create_app(live)) as c:
        r = c.get("/v1/feedback")
        assert r.status_code == 501 and r.json()["error"] == "not_implemented"


def test_history(open_client: TestClient, live: LiveState) -> None:
    system = live.systems()[0]["system"]
    points = open_client.get(f"/v1/systems/{system}/history").json()
    assert len(points) >= 5  # 45 simulated minutes, a point a minute at most
    assert points == sorted(points, key=lambda p: p["t"])
    assert all(0 <= p["health"] <= 100 for p in points)
    assert open_client.get("/v1/systems/nope/history").status_code == 404


def test_alerts_without_notifier(open_client: TestClient) -> None:
    assert open_client.get("/v1/alerts").json() == {"source": "none", "alerts": []}


def test_docs_and_console_need_no_cdn(open_client: TestClient) -> None:
    html = open_client.get("/docs").text
    assert "/static/swagger/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    js = open_client.get("/static/swagger/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 500_000
    page = open_client.get("/console")
    assert page.status_code == 200 and "/static/console.js" in page.text
    for asset in ("/static/console.js", "/static/console.css"):
        text = open_client.get(asset).text
        text = text.replace("http://www.w3.org/2000/svg", "")  # a namespace, not a fetch
        assert "https://" not in text and "http://" not in text, asset


def test_score_wants_json(open_client: TestClient) -> None:
    r = open_client.post("/v1/score", content=b"[]", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_media_type"
    r = open_client.post("/v1/feedback", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 422


class FakeNotifier:
    """What the API reads of an AlertNotifier: ``counts`` and ``firing()``."""

    def __init__(self) -> None:
        from collections import Counter

        from predictor.alerts import Alert

        self.counts = Counter({"posted": 3, "resolved": 1})
        labels = {"alertname": "PrecoveryFailoverNow", "system": "eq-oms", "severity": "P1"}
        self.alert = Alert(("eq-oms", "failover_now"), "P1", labels, {"summary": "switch now"})

    def firing(self) -> list[Any]:
        return [self.alert]


def test_metrics_and_alerts(live: LiveState) -> None:
    notifier = FakeNotifier()
    with TestClient(create_app(live, alerts=notifier)) as c:
        text = c.get("/metrics").text
        body = c.get("/v1/alerts").json()
    system = live.systems()[0]["system"]
    assert f'precovery_system_risk{{system="{system}"}}' in text
    assert f'precovery_system_health{{system="{system}"}}' in text
    assert 'precovery_stage_seconds_bucket{le="+Inf",stage="engine"}' in text
    assert 'precovery_alerts_total{outcome="posted"} 3.0' in text
    assert "precovery_alerts_firing 1.0" in text
    assert body["source"] == "notifier"
    assert body["alerts"][0]["labels"]["system"] == "eq-oms"
    assert body["alerts"][0]["annotations"]["summary"] == "switch now"


def test_demo_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    exe = str(Path(sys.executable).parent / "precovery")
    r = subprocess.run(
        [exe, "demo", "--host", "0.0.0.0", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PRECOVERY_STATE_DIR": str(tmp_path)},
    )
    assert r.returncode != 0
    assert "without API keys" in r.stdout + r.stderr


def test_tls_options(tmp_path: Path) -> None:
    from pipelines.records.keys import tls_options
    from pipelines.settings import ApiSettings

    assert tls_options(Settings(state_dir=tmp_path)) == {}
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    half = Settings(api=ApiSettings(ssl_certfile=cert))
    with pytest.raises(ConfigError, match="both"):
        tls_options(half)
    both = Settings(api=ApiSettings(ssl_certfile=cert, ssl_keyfile=key))
    with pytest.raises(ConfigError, match="not found"):
        tls_options(both)
    cert.write_text("x")
    key.write_text("y")
    assert tls_options(both) == {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
