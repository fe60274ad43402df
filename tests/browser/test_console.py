"""The SRE console in a real headless Chromium, against a running server fed by a worker:
the page loads, shows every system with a chart, a new recommendation arrives over the
event stream, and clicking "False alarm" stores the verdict. A screenshot is saved."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.embedded.live import LiveState
from pipelines.records.feedback import FeedbackStore
from predictor.risk import RiskModel
from serve.app import create_app
from tests.api.support import build_live
from tests.browser.console import chromium, push_recommendation
from tests.chaos.harness import FedWorker, ServerThread
from tests.factories import SimStream

pytestmark = pytest.mark.slow


def wait(fn: Any, timeout_s: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out: {what}")


@pytest.fixture
def served(
    api_stream: SimStream, small_model: RiskModel, tmp_path: Path
) -> Iterator[tuple[LiveState, str, FeedbackStore]]:
    live = build_live(api_stream, small_model, max_batch=500)
    store = FeedbackStore(tmp_path / "feedback.sqlite")
    app = create_app(live, feedback=store, sse_keepalive_s=1.0)
    with FedWorker(live, period_s=0.2) as _fed, ServerThread(app) as server:
        yield live, server.url, store


def test_console_in_chromium(served: tuple[LiveState, str, FeedbackStore], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    live, url, store = served
    systems = {s["system"] for s in live.systems()}
    assert len(systems) == 3
    browser = chromium(tmp_path / "profile")
    try:
        browser.get(f"{url}/console")
        cards = wait(
            lambda: (
                browser.find_elements(By.CSS_SELECTOR, ".system-card")
                if len(browser.find_elements(By.CSS_SELECTOR, ".system-card")) == 3
                else None
            ),
            what="three system cards",
        )
        assert {c.get_attribute("data-system") for c in cards} == systems
        wait(
            lambda: all(c.find_elements(By.CSS_SELECTOR, "polyline.health") for c in cards),
            what="a chart per system",
        )
        # a recommendation made now arrives over the event stream
        rec = {**live.recommendations(limit=1)[-1], "recommendation_id": "browser-test-rec"}
        for k in ("seq", "stream_id", "cursor"):
            rec.pop(k)
        wait(
            lambda: "live" in browser.find_element(By.ID, "feedstate").text,
            what="the event stream",
        )
        push_recommendation(live, rec)
        item = wait(
            lambda: browser.find_elements(By.CSS_SELECTOR, 'li.rec[data-id="browser-test-rec"]'),
            what="the new recommendation in the feed",
        )[0]
        assert rec["system"] in item.text and "$" in item.text and "why:" in item.text
        item.find_element(By.CSS_SELECTOR, "button.false-alarm").click()
        wait(
            lambda: "stored: false_alarm" in item.find_element(By.CSS_SELECTOR, ".verdict").text,
            what="the verdict stored",
        )
        shot = tmp_path / "console.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        logs = browser.get_log("browser") if hasattr(browser, "get_log") else []
        assert not [e for e in logs if e.get("level") == "SEVERE"], logs
    finally:
        browser.quit()
    rows = store.list()
    assert [(r["recommendation_id"], r["verdict"]) for r in rows] == [
        ("browser-test-rec", "false_alarm")
    ]
    assert httpx.get(f"{url}/v1/feedback").json()[0]["verdict"] == "false_alarm"
