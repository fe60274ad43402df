"""The team setup: an MLflow tracking server on a real PostgreSQL backend store.

``scripts/postgres start`` runs the Debian package's PostgreSQL on its own port and data
directory; the test starts ``mlflow server`` on it, logs and registers a model through
:class:`~pipelines.training.tracking.Tracker`, promotes it and loads ``@champion`` back, then
checks the rows really are in PostgreSQL. A missing PostgreSQL is a failure with the
reason, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    # Not under pytest's tmp dir: as root the server runs as the postgres user, who
    # cannot enter root's 0700 pytest folders.
    data = tempfile.mkdtemp(prefix="precovery-pg-")
    env = {
        **os.environ,
        "PRECOVERY_POSTGRES_DIR": data,
        "PRECOVERY_POSTGRES_PORT": str(_free_port()),
    }
    script = REPO / "scripts" / "postgres"
    started = subprocess.run(
        [str(script), "start"], env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, (
        f"PostgreSQL did not start (scripts/postgres start; apt-get install postgresql):\n"
        f"{started.stderr}"
    )
    url = started.stdout.strip().splitlines()[-1].split("=", 1)[1]
    try:
        yield url
    finally:
        subprocess.run([str(script), "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def server(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    art = tmp_path_factory.mktemp("artifacts")
    log = (tmp_path_factory.mktemp("mlflow-log") / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            postgres,
            "--artifacts-destination",
            art.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"mlflow server exited: see {log.name}"
            assert time.monotonic() < deadline, f"mlflow server not up in 180 s: {log.name}"
            time.sleep(1.0)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _small_result() -> tuple[object, object, np.ndarray]:
    """A tiny history whose metric climbs in the 15 min before each incident."""
    from pipelines.training.train import Dataset, TrainConfig, train_full
    from predictor.labels import Incident

    rng = np.random.default_rng(0)
    ts = np.arange(0, 48 * 3600_000, 30_000, dtype=np.int64)
    starts = [h * 3600_000 for h in range(2, 48, 4)]
    value = rng.normal(0, 1, len(ts))
    for s in starts:
        before = (ts >= s - 900_000) & (ts < s)
        value[before] += np.linspace(1, 6, int(before.sum()))
    x = np.column_stack([value, np.abs(value) / 6, rng.normal(0, 1, len(ts))])
    data = Dataset(
        x=x.astype(np.float32),
        y=np.zeros(0, dtype=np.int8),
        ts_ms=ts,
        keys=[("s", "c", "h")] * len(ts),
        feature_names=["m__value", "anomaly_score", "noise"],
        metric_names=("m",),
        source={"sha256": "0" * 64, "from": "x", "to": "y", "rows": len(ts)},
    )
    incidents = [Incident("s", "c", None, s, s + 600_000) for s in starts]
    cfg = TrainConfig(horizon_s=900.0, n_estimators=20, num_threads=1)
    return train_full(data, incidents, cfg), cfg, data.x


def test_a_run_registered_on_a_postgres_backed_server_comes_back_as_champion(
    server: str, postgres: str
) -> None:
    from pipelines.settings import MlflowSettings
    from pipelines.training.tracking import Tracker, load_model_uri

    result, cfg, x = _small_result()
    tracker = Tracker(MlflowSettings(tracking_uri=server, experiment="integration"))
    logged = tracker.log_training(result, cfg, True, x)  # type: ignore[arg-type]
    assert logged["version"] == "1"
    tracker.set_champion("1", {"reason": "integration test"})
    model, resolved = load_model_uri("models:/failure-risk@champion", tracker)
    assert resolved == "models:/failure-risk/1"
    assert model.version == f"failure-risk/1:{result.model.version}"  # type: ignore[attr-defined]
    np.testing.assert_allclose(
        model.predict_risk(x[:100]),
        result.model.predict_risk(x[:100]),  # type: ignore[attr-defined]
    )

    import psycopg2

    with psycopg2.connect(postgres) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone() == (1,)
        cur.execute("SELECT alias, version FROM registered_model_aliases")
        assert cur.fetchall() == [("champion", 1)]
