"""Response and request bodies of the HTTP API (they make the OpenAPI docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

Action = Literal["none", "watch", "prepare_standby", "failover_at_window", "failover_now"]


class Reason(BaseModel):
    feature: str = Field(description="Feature name, or the rule that fired")
    value: float | None = Field(description="The feature's value at decision time")
    contribution: float | None = Field(
        description="Push on the risk, in log-odds (None for a hard rule)"
    )


class Exposure(BaseModel):
    net: float | None = Field(description="Net notional, USD")
    gross: float | None = Field(description="Gross notional, USD")
    open_orders: int = Field(description="Open orders, count")


class MarketOut(BaseModel):
    venue: str | None
    session: str
    volatility_bps_per_min: float = Field(description="Volatility, bps per √minute")
    spread_bps: float = Field(description="Spread, bps")
    depth_usd: float | None = Field(description="Depth at touch, USD")
    event_risk: bool
    window_in_s: float | None = Field(None, description="Seconds to the next calmer window")


class Recommendation(BaseModel):
    seq: int | None = Field(None, description="Sequence number in this server's stream")
    stream_id: str | None = Field(
        None, description="This server process's stream (new at every restart)"
    )
    cursor: str | None = Field(
        None, description="Resume after this one: pass as ?after= (or SSE Last-Event-ID)"
    )
    recommendation_id: str = Field(description="Deterministic: same input → same id")
    epoch: int = Field(description="Fencing token, only grows per system")
    issued_at: str = Field(description="Event time of the decision, RFC 3339 UTC")
    system: str
    component: str
    action: Action
    not_before: str | None = Field(description="For failover_at_window: when, RFC 3339 UTC")
    risk: float | None = Field(description="P(failure within horizon_s)")
    horizon_s: float = Field(description="Risk horizon, seconds")
    health: float = Field(description="Component health, 0-100")
    expected_loss_stay_usd: float | None = Field(description="risk × outage loss, USD")
    expected_cost_switch_usd: float | None = Field(description="Cheapest switch, USD")
    cost_switch_now_usd: float | None = Field(description="Switch now, USD")
    cost_switch_at_window_usd: float | None = Field(description="Switch at the window, USD")
    outage_loss_usd: float | None = Field(description="Loss if it fails unplanned, USD")
    exposure_usd: Exposure
    criticality: float | None = Field(
        None, description="Share of the system's outage loss this component causes, 0-1"
    )
    active_site: str | None = Field(None, description="The site the system runs on now")
    failover_site: str | None = Field(None, description="The site a failover moves it to")
    authority: Literal["auto", "approve"] | None = Field(
        None,
        description="auto: the orchestrator may act alone (declared auto, limits hold, "
        "fresh context); approve: a person approves",
    )
    authority_declared: Literal["auto", "approve"] | None = Field(
        None, description="The topology's declared authority for the system"
    )
    auto_limits_hold: bool | None = Field(
        None, description="For a declared auto: whether every limit held (null: approve)"
    )
    auto_limits_breached: list[str] = Field(
        default_factory=list, description="Limits broken, with figures (USD, counts)"
    )
    stale_context: list[str] = Field(
        default_factory=list,
        description="Context older than its bound: positions, market (empty: fresh)",
    )
    decision_reasons: list[str] = Field(
        default_factory=list, description="The decision in words, with its figures in USD"
    )
    market: MarketOut
    reasons: list[Reason]
    model_version: str | None


class SystemSummary(BaseModel):
    system: str
    health: float = Field(description="0-100")
    worst_component: str
    worst_component_health: float = Field(description="0-100")
    max_risk: float | None = Field(description="Highest component risk within the horizon")
    action: Action = Field(description="Most urgent current action of its components")
    components: int
    epoch: int


class HostOut(BaseModel):
    host: str
    health: float
    risk: float | None
    anomaly_score: float = Field(description="0-1, calibrated")
    heartbeat_age_s: float = Field(description="Seconds since its last event (event time)")
    heartbeat_missed: bool


class ComponentOut(BaseModel):
    component: str
    critical: bool
    health: float
    risk: float | None
    action: Action
    hosts: list[HostOut]
    latest_recommendation: Recommendation | None


class SystemDetail(BaseModel):
    system: str
    health: float
    as_of: str | None = Field(description="Watermark (latest event time), RFC 3339 UTC")
    epoch: int
    active_site: str | None = Field(
        None, description="Site the system runs on now (flips after an approved failover)"
    )
    exposure_usd: Exposure
    market: MarketOut | None
    components: list[ComponentOut]
    model_version: str | None
    horizon_s: float


class TelemetryEvent(BaseModel):
    """One telemetry.v1 event (DESIGN.md §2)."""

    ts: int | str = Field(
        description="Event time: epoch milliseconds, or RFC 3339 with a UTC offset"
    )
    system: str = Field(min_length=1, max_length=128)
    component: str = Field(min_length=1, max_length=128)
    host: str = Field(min_length=1, max_length=128)
    metrics: dict[str, float | None] = Field(
        max_length=256,
        description="Metric name → finite value (null: absent); untracked names are ignored",
    )


class ScoreRequest(BaseModel):
    """Body of ``POST /v1/score`` (a bare JSON array of events is accepted too)."""

    events: list[TelemetryEvent] = Field(description="telemetry.v1 events, in order")


class ScoreRow(BaseModel):
    system: str | None = None
    component: str | None = None
    host: str | None = None
    anomaly_score: float | None = None
    risk: float | None = None
    health: float | None = None
    known_entity: bool | None = None
    rejected: bool = False
    reason: str | None = None
    detail: str | None = None


class ScoreResponse(BaseModel):
    model_version: str | None
    horizon_s: float
    scored: int
    rejected: int
    results: list[ScoreRow]


class Health(BaseModel):
    status: Literal["ok"]
    model_version: str | None
    entities: int
    watermark: str | None


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    reasons: list[str] = Field(description="Every failing check, named; empty when ready")
    conditions: list[str] = Field(
        description="Conditions in force: telemetry_lost, worker_dead, lagging"
    )
    input_idle_s: float | None = Field(description="Seconds since the last input record")
    consumer_lag: int | None = Field(description="Consumer lag, records")


class ErrorBody(BaseModel):
    error: str
    reason: str
    detail: str = ""
    request_id: str | None = Field(None, description="Also in the X-Request-ID header")
    rejects: list[dict[str, Any]] | None = Field(None, description="Every reject, first 100")


class CursorResetBody(ErrorBody):
    stream_id: str = Field(description="The current stream: start over with after=0")


class HistoryPoint(BaseModel):
    t: str = Field(description="Event time of the point, RFC 3339 UTC")
    health: float = Field(description="System health, 0-100")
    max_risk: float | None = Field(description="Highest component risk within the horizon")
    action: Action = Field(description="Most urgent action of its components then")


Verdict = Literal["acknowledged", "false_alarm", "confirmed", "missed"]


class FeedbackIn(BaseModel):
    """An SRE's verdict on one recommendation (a training label later)."""

    recommendation_id: str = Field(min_length=1, max_length=128)
    system: str = Field(min_length=1, max_length=128)
    component: str | None = Field(None, min_length=1, max_length=128)
    verdict: Verdict = Field(
        description="acknowledged (seen, acting), false_alarm (nothing was wrong), "
        "confirmed (a real problem), missed (an incident it did not foresee, at ts)"
    )
    note: str = Field("", max_length=1000)
    ts: str | None = Field(
        None,
        max_length=40,
        description="Event time the verdict is about, RFC 3339 UTC (a missed incident's "
        "start); default: when it is stored",
    )

    @field_validator("ts")
    @classmethod
    def _ts_parses(cls, v: str | None) -> str | None:
        if v is not None:
            from predictor.events import parse_ts

            try:
                parse_ts(v)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"ts {v!r} is not an RFC 3339 time: {exc}") from exc
        return v


class Feedback(FeedbackIn):
    id: int
    at: str = Field(description="When it was stored, RFC 3339 UTC (wall clock)")
    key_id: str | None = Field(description="The API key that gave it (None: the API runs open)")


class AlertOut(BaseModel):
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]


class Alerts(BaseModel):
    source: Literal["notifier", "none"] = Field(
        description="notifier: this process sends alerts to Alertmanager; none: it does not"
    )
    alerts: list[AlertOut]


class KeyOut(BaseModel):
    id: str
    name: str
    role: Literal["read", "operate", "admin"]
    created_at: str
    revoked_at: str | None
    rate_per_s: float | None


AuditKind = Literal["recommendation", "delivery", "approval", "model_change"]


class AuditRecord(BaseModel):
    """One row of the append-only audit trail (docs/audit.md)."""

    id: int = Field(description="Grows with every record: the order they were written")
    at: str = Field(description="When Precovery recorded it, RFC 3339 UTC (wall clock)")
    kind: AuditKind
    actor: str = Field(
        description="stream (the engine), delivery (the pusher), an API key's name and id "
        "(a person), or the caller of a model change"
    )
    system: str | None
    subject: str | None = Field(description="A recommendation or decision id, a model version")
    payload: Any = Field(
        description="recommendation: the recommendations.v1 record (exposure_usd, market "
        "and every dollar term); delivery: outcome, attempt, epoch, detail; approval: the "
        "decision record; model_change: from, to, reason"
    )


class AuditPage(BaseModel):
    records: list[AuditRecord]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null when this page is the last"
    )


class DecisionIn(BaseModel):
    """Why a person approves or rejects a failover (recorded in the audit trail)."""

    reason: str = Field(min_length=1, max_length=1000)


class Decision(BaseModel):
    """A person's decision on a recommendation (also sent to the orchestrator channel as
    a record of kind ``decision``)."""

    kind: Literal["decision"]
    decision_id: str = Field(description="<recommendation_id>.<decision>: idempotency key")
    recommendation_id: str
    epoch: int = Field(description="The recommendation's fencing epoch")
    system: str
    component: str
    action: str
    not_before: str | None
    decision: Literal["approved", "rejected"]
    reason: str
    decided_by: str = Field(description="The API key's name and id (open API: anonymous)")
    decided_at: str = Field(description="RFC 3339 UTC (wall clock)")
    previous_site: str | None = Field(description="The active site the recommendation named")
    active_site: str | None = Field(description="The system's active site after the decision")
    forwarded: bool = Field(description="Whether it went to the orchestrator channel")


class DecisionConflictBody(ErrorBody):
    decision: Decision | None = Field(None, description="The decision already taken, if any")
