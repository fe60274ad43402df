"""One error tree for the whole project.

::

    PrecoveryError
    ├── ValidationError        bad input: a malformed event, a wrong type, NaN/inf  → HTTP 422
    │   └── PayloadTooLarge    a body or message over the configured limit          → HTTP 413
    ├── UnknownEntityError     a system/component nobody has seen                  → HTTP 404
    ├── ModelError             no model, or a model that does not fit the features  → HTTP 503
    ├── ConfigError            a setting that cannot work                           → exit code 2
    └── EdgeError              an edge (Kafka, HTTP, disk) failed; the vendor error is chained
        ├── SourceError        reading input failed
        └── SinkError          writing output failed

Vendor exceptions are translated at the edge (``raise SourceError(msg) from exc``);
``serve`` maps this tree to status codes in one handler.
"""

from __future__ import annotations


class PrecoveryError(Exception):
    """Base of every error this project raises on purpose."""


class ValidationError(PrecoveryError, ValueError):
    """An input failed validation; ``reason`` is short and machine-friendly."""

    def __init__(
        self, reason: str, detail: str = "", items: list[dict[str, object]] | None = None
    ) -> None:
        self.reason = reason
        self.detail = detail
        #: Per-item reasons when a batch fails (index, reason, detail).
        self.items = items or []
        super().__init__(f"{reason}: {detail}" if detail else reason)


class PayloadTooLarge(ValidationError):
    """A request body or message exceeds the configured size limit."""


class UnknownEntityError(PrecoveryError, KeyError):
    """A system or component that the engine does not track."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "unknown entity"


class ModelError(PrecoveryError):
    """The risk model is missing or does not match the features."""


class ConfigError(PrecoveryError):
    """A configuration value that cannot work."""


class EdgeError(PrecoveryError):
    """An edge of the system (Kafka, HTTP, files) failed."""


class SourceError(EdgeError):
    """Reading input from an edge failed."""


class SinkError(EdgeError):
    """Writing output to an edge failed."""
