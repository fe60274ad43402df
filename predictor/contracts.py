"""The wire formats, one typed home: topics, actions, sessions, metrics and every record.

Everything that crosses a process boundary is defined here once and imported by the
decoders (:mod:`predictor.events`), the engine's outputs (:mod:`predictor.recommend`,
:mod:`predictor.views`), the simulator, the Kafka and file edges, and the API schemas.
docs/contracts.md describes the same formats for people; a test keeps the two in step.

Times on the wire are RFC 3339 UTC strings or epoch milliseconds (input), and RFC 3339
UTC with milliseconds and a ``Z`` (output). Money is USD, risk a probability in [0, 1]
over ``horizon_s`` seconds, health 0–100.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# -- names -------------------------------------------------------------------------------
#: Topic names (the defaults of ``PRECOVERY_KAFKA__*_TOPIC``).
TOPIC_TELEMETRY = "telemetry.v1"
TOPIC_POSITIONS = "positions.v1"
TOPIC_MARKET = "market.v1"
TOPIC_INCIDENTS = "incidents.v1"
TOPIC_RECOMMENDATIONS = "recommendations.v1"
TOPIC_HEALTH = "health.v1"
TOPIC_DLQ = "telemetry.dlq.v1"
TOPIC_COMMANDS = "commands.v1"

#: Recommendation actions, least to most urgent (their index is their urgency).
ACTIONS: tuple[str, ...] = (
    "none",
    "watch",
    "prepare_standby",
    "failover_at_window",
    "failover_now",
)
Action = Literal["none", "watch", "prepare_standby", "failover_at_window", "failover_now"]

#: Market sessions (market.v1 ``session``).
SESSIONS: tuple[str, ...] = (
    "closed",
    "pre_open",
    "opening_auction",
    "continuous",
    "closing_auction",
)
Session = Literal["closed", "pre_open", "opening_auction", "continuous", "closing_auction"]

#: Who may act on a failover: the orchestrator within limits, or a person.
Authority = Literal["auto", "approve"]

#: The metrics of the simulated fleet (and the shipped baseline model). Metric names are
#: open: a model declares the ones it takes (``RiskModel.metric_names_``).
DEFAULT_METRICS: tuple[str, ...] = (
    "cpu_pct",
    "mem_pct",
    "gc_pause_ms",
    "db_lock_wait_ms",
    "db_latency_ms",
    "net_rtt_us",
    "packet_loss_pct",
    "disk_io_wait_pct",
    "disk_used_pct",
    "queue_depth",
    "order_latency_p99_us",
    "md_feed_lag_ms",
    "md_seq_gaps",
    "error_rate",
    "heartbeat_age_ms",
)

#: Columns of an incidents file, in order (the fields of :class:`IncidentV1`).
INCIDENT_COLUMNS: tuple[str, ...] = (
    "incident_id",
    "system",
    "component",
    "host",
    "started_at",
    "resolved_at",
    "severity",
    "kind",
    "summary",
)

#: Incident severities.
SEVERITIES: tuple[str, ...] = ("P1", "P2", "P3", "P4")

#: Headers of a dead letter (telemetry.dlq.v1); its value is the original bytes.
DLQ_HEADERS: tuple[str, ...] = (
    "dlq.source.topic",
    "dlq.source.partition",
    "dlq.source.offset",
    "dlq.reason",
    "dlq.detail",
)

Time = str | int | float


# -- input records -------------------------------------------------------------------------
class TelemetryV1(TypedDict):
    """telemetry.v1, key = system."""

    ts: Time
    system: str
    component: str
    host: str
    metrics: dict[str, float | int | None]


class PositionV1(TypedDict):
    """positions.v1, key = system: what a failover of the system would disturb."""

    ts: Time
    system: str
    venue: str
    net_notional_usd: float
    gross_notional_usd: float
    open_orders: int


class MarketV1(TypedDict):
    """market.v1, key = venue."""

    ts: Time
    venue: str
    volatility_bps_per_min: float
    spread_bps: float
    depth_usd: float
    session: Session
    event_risk: NotRequired[bool]


class IncidentV1(TypedDict):
    """An incident of the history (file or topic): training labels and evaluation."""

    incident_id: str
    system: str
    component: str
    host: NotRequired[str | None]
    started_at: Time
    resolved_at: NotRequired[Time | None]
    severity: NotRequired[str]
    kind: NotRequired[str]
    summary: NotRequired[str]


# -- output records ------------------------------------------------------------------------
class Reason(TypedDict):
    """Why: a model feature and its contribution (log-odds), or a rule (contribution null)."""

    feature: str
    value: float | None
    contribution: float | None


class Exposure(TypedDict):
    net: float | None
    gross: float | None
    open_orders: int


class MarketSnapshot(TypedDict):
    venue: str | None
    session: str
    volatility_bps_per_min: float
    spread_bps: float
    depth_usd: float | None
    event_risk: bool
    window_in_s: float | None


class RecommendationV1(TypedDict):
    """recommendations.v1, key = system, header ``idempotency-key`` = the id.

    ``recommendation_id`` is deterministic (same input, same id); ``epoch`` is a fencing
    token that only grows per system, so an orchestrator can refuse a stale writer.
    """

    recommendation_id: str
    epoch: int
    issued_at: str
    system: str
    component: str
    action: Action
    not_before: str | None
    risk: float | None
    horizon_s: float
    health: float
    expected_loss_stay_usd: float | None
    expected_cost_switch_usd: float | None
    cost_switch_now_usd: float | None
    cost_switch_at_window_usd: float | None
    outage_loss_usd: float | None
    exposure_usd: Exposure
    criticality: float
    active_site: str
    failover_site: str
    authority: Authority
    authority_declared: Authority
    auto_limits_hold: bool | None
    auto_limits_breached: list[str]
    stale_context: list[str]
    decision_reasons: list[str]
    market: MarketSnapshot
    reasons: list[Reason]
    model_version: str | None


class FailingComponent(TypedDict):
    component: str
    action: Action
    risk: float | None
    health: float


class SituationReportV1(TypedDict):
    """A situation report on recommendations.v1 (``kind`` tells it from a recommendation):
    a system at ``prepare_standby`` or worse, every ``report_every_s`` of event time."""

    kind: Literal["situation_report"]
    report_id: str
    epoch: int
    issued_at: str
    since: str
    system: str
    action: Action
    active_site: str
    failing: list[FailingComponent]
    max_risk: float | None
    previous_max_risk: float | None
    risk_trend: Literal["new", "rising", "steady", "falling", "unknown"]
    exposure_usd: Exposure
    market: dict[str, object] | None
    stale_context: list[str]
    changes: list[str]


class HealthV1(TypedDict):
    """health.v1 (compacted), key = system: the system's state as of a tick."""

    system: str
    health: float
    worst_component: str
    worst_component_health: float
    max_risk: float | None
    action: Action
    components: int
    epoch: int
    as_of_ms: int | None
    conditions: list[str]
