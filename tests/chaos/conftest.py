"""The chaos suite's server: the real app under uvicorn, fed by a live stream worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipelines.feed import FeedMonitor
from pipelines.live import LiveState
from predictor.risk import RiskModel
from serve.app import create_app
from tests.api.conftest import build_live
from tests.chaos.harness import FedWorker, ServerThread
from tests.factories import SimStream


@pytest.fixture(scope="module")
def chaos_live(failure_stream: SimStream, small_model: RiskModel) -> LiveState:
    live = build_live(failure_stream, small_model)
    live.feed = FeedMonitor(lost_after_s=10.0, max_lag=100_000)
    return live


@pytest.fixture(scope="module")
def fed(chaos_live: LiveState) -> Iterator[FedWorker]:
    with FedWorker(chaos_live, period_s=0.2) as worker:
        yield worker


@pytest.fixture(scope="module")
def server(chaos_live: LiveState, fed: FedWorker) -> Iterator[ServerThread]:
    app = create_app(chaos_live, max_body_bytes=64 * 1024, sse_keepalive_s=0.5)
    with ServerThread(app, timeout_keep_alive=30) as srv:
        yield srv
