"""One ``Settings`` for the whole service, from ``PRECOVERY_*`` environment variables.

Nested groups use ``__``: ``PRECOVERY_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``,
``PRECOVERY_API__PORT=8000``. Built by the cached :func:`get_settings`, never at import.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from pipelines.outbound.alertmanager import AlertNotifier
    from pipelines.outbound.orchestrator import DeliveryConfig
    from predictor.engine import EngineConfig


class KafkaSettings(BaseModel):
    """Kafka edge."""

    bootstrap_servers: str | None = Field(None, description="host:port[,host:port]; None: no Kafka")
    group_id: str = Field("precovery-stream", description="Consumer group of the stream workers")
    telemetry_topic: str = Field("telemetry.v1", description="Input: telemetry, key = system")
    positions_topic: str = Field("positions.v1", description="Input: positions, key = system")
    market_topic: str = Field("market.v1", description="Input: market conditions, key = venue")
    incidents_topic: str = Field("incidents.v1", description="Input/output: incidents")
    recommendations_topic: str = Field("recommendations.v1", description="Output, key = system")
    health_topic: str = Field("health.v1", description="Output, compacted, key = system")
    dlq_topic: str = Field("telemetry.dlq.v1", description="Output: rejected input and why")
    commands_topic: str = Field(
        "commands.v1", description="Approved failovers, from the API to the workers (1 partition)"
    )
    max_poll_records: int = Field(5000, description="Records per micro-batch, at most")
    max_message_bytes: int = Field(64 * 1024, description="Larger input goes to the DLQ, bytes")


class ApiSettings(BaseModel):
    """HTTP edge."""

    host: str = Field("127.0.0.1", description="Listen address")
    port: int = Field(8000, description="Listen port")
    max_body_bytes: int = Field(1024 * 1024, description="Largest request body, bytes")
    max_events_per_request: int = Field(10_000, description="Events in one POST /v1/score")
    keys_file: Path | None = Field(
        None, description="API keys (docs/api.md); None: <state_dir>/api-keys.json"
    )
    feedback_db: Path | None = Field(
        None, description="SREs' verdicts, SQLite; None: <state_dir>/feedback.sqlite"
    )
    allowed_hosts: list[str] = Field(
        ["localhost", "127.0.0.1", "::1"],
        description="Host headers served (JSON list; '*' any, '*.example.com' a domain)",
    )
    cors_origins: list[str] = Field([], description="Browser origins allowed (JSON list)")
    rate_per_s: float = Field(50.0, gt=0, description="Requests/s per API key, sustained")
    burst: int = Field(100, ge=1, description="Requests per API key at once")
    ssl_certfile: Path | None = Field(None, description="TLS certificate (PEM); None: plain HTTP")
    ssl_keyfile: Path | None = Field(None, description="TLS private key (PEM)")


class StreamSettings(BaseModel):
    """The Kafka stream worker's own HTTP port (``/metrics``, ``/healthz``, ``/readyz``)."""

    ops_port: int | None = Field(None, description="Ops port of precovery stream; None: none")
    ops_host: str = Field("127.0.0.1", description="Ops listen address")


class AlertSettings(BaseModel):
    """SRE alerts to Prometheus Alertmanager (docs/alerting.md)."""

    url: str | None = Field(None, description="Alertmanager base URL; None: no alerts")
    interval_s: float = Field(5.0, gt=0, description="Sync alerts this often, wall s")
    repeat_s: float = Field(60.0, gt=0, description="Re-post a firing alert this often, s")
    link: str = Field(
        "http://127.0.0.1:8000/v1/systems/",
        description="URL prefix of a system's page in alerts (the system name is appended)",
    )
    page_loss_usd: float = Field(250_000.0, description="P1 at risk ≥ 0.8 and this stay loss, USD")
    urgent_loss_usd: float = Field(
        100_000.0, description="P2 for prepare_standby at this stay loss, USD"
    )


class DeliverySettings(BaseModel):
    """Recommendations pushed to an orchestrator (docs/delivery.md)."""

    url: str | None = Field(None, description="Orchestrator endpoint; None: no push")
    secret: str | None = Field(None, description="HMAC-SHA256 body signature secret")
    timeout_s: float = Field(5.0, gt=0, description="Per request, s")
    backoff_base_s: float = Field(0.5, gt=0, description="First retry waits up to this, s")
    backoff_max_s: float = Field(60.0, gt=0, description="Longest retry wait, s")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open it")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="Open circuit lasts, s")


class MlflowSettings(BaseModel):
    """Model tracking and registry (docs/retraining.md)."""

    tracking_uri: str | None = Field(
        None,
        description="MLflow tracking URI; None: $MLFLOW_TRACKING_URI, else SQLite "
        "./mlruns.db (artifacts in ./mlartifacts)",
    )
    artifacts_dir: Path | None = Field(
        None, description="Artifacts of a SQLite store; None: mlartifacts/ next to the file"
    )
    experiment: str = Field("precovery", description="Experiment that training runs go to")
    model_name: str = Field("failure-risk", description="Registered model name")
    champion: bool = Field(
        False,
        description="Demo and stream load models:/<model_name>@champion and swap to a "
        "new champion when it changes",
    )
    poll_s: float = Field(30.0, gt=0, description="Check for a new champion this often, wall s")


class Settings(BaseSettings):
    """Everything configurable, with units in the names."""

    model_config = SettingsConfigDict(env_prefix="PRECOVERY_", env_nested_delimiter="__")

    model_dir: Path = Field(Path("models/baseline"), description="Risk model directory")
    state_dir: Path = Field(Path(".precovery"), description="Checkpoints and local state")
    risk_cadence_s: float = Field(60.0, description="Event time between risk scorings, s")
    tick_s: float = Field(10.0, description="Event time between decision rounds, s")
    hold_s: float = Field(300.0, description="A lower action must hold this long, s")
    heartbeat_interval_s: float = Field(
        10.0, gt=0, description="Expected telemetry interval per host, s (seed design: 0.1)"
    )
    heartbeat_misses: int = Field(
        3, ge=1, description="Missed intervals that mean failure now (heartbeat rule)"
    )
    feed_lost_after_s: float = Field(
        30.0, gt=0, description="No input at all for this long (wall s) is telemetry_lost"
    )
    failover_on_feed_loss: bool = Field(
        False, description="Let the heartbeat rule fire fleet-wide when all input stops"
    )
    detector: str = Field(
        "surprise", description="Anomaly detector: surprise (default) or surprise_hst (river)"
    )
    audit_url: str | None = Field(
        None,
        description="Audit trail, any SQLAlchemy URL (docs/audit.md); None: SQLite "
        "<state_dir>/audit.sqlite",
    )
    topology_file: Path | None = Field(
        None,
        description="Systems, criticality, venues, sites, authority and cost parameters, "
        "YAML or JSON (docs/decisions.md); None: every component critical, authority approve",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()


def engine_config(
    settings: Settings, detector: str | None = None, topology: Path | None = None
) -> EngineConfig:
    """The engine's loop settings from ``settings`` (one place for every mode), with the
    topology file ``topology`` (default: the setting's) read in."""
    from pipelines.files.topology import with_topology
    from predictor.engine import EngineConfig

    base = EngineConfig(
        detector=detector or settings.detector,
        tick_s=settings.tick_s,
        risk_cadence_s=settings.risk_cadence_s,
        hold_s=settings.hold_s,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        heartbeat_misses=settings.heartbeat_misses,
    )
    return with_topology(base, topology or settings.topology_file)


def alert_notifier(settings: AlertSettings, url: str | None = None) -> AlertNotifier | None:
    """The SRE alert notifier for ``url`` (default: the setting), or None without one."""
    target = url or settings.url
    if not target:
        return None
    from pipelines.outbound.alertmanager import AlertmanagerClient, AlertNotifier
    from predictor.alerts import AlertPolicy

    return AlertNotifier(
        AlertmanagerClient(target),
        AlertPolicy(settings.page_loss_usd, settings.urgent_loss_usd),
        link=settings.link,
        repeat_s=settings.repeat_s,
    )


def delivery_config(settings: DeliverySettings, url: str | None = None) -> DeliveryConfig | None:
    """The orchestrator push for ``url`` (default: the setting), or None without one."""
    target = url or settings.url
    if not target:
        return None
    from pipelines.outbound.orchestrator import DeliveryConfig

    return DeliveryConfig(
        target,
        secret=settings.secret,
        timeout_s=settings.timeout_s,
        backoff_base_s=settings.backoff_base_s,
        backoff_max_s=settings.backoff_max_s,
        breaker_failures=settings.breaker_failures,
        breaker_cooldown_s=settings.breaker_cooldown_s,
    )
