"""Train the failure-risk model from telemetry and incident history.

Features come from the stream's own :class:`~predictor.engine.Engine` run over the
history (train/serve parity by construction). Rows are taken every ``stride``-th event
(at the default 10 s interval and stride 3, one row per 30 s: the stream's risk
cadence), labelled from incidents (:func:`predictor.labels.make_labels`), split in time
with a purge gap of one horizon between train and test, and scored on the test window
with the metrics operators care about.

One module per concept; this one is the entry point and re-exports every name, so
callers import from ``pipelines.training.train`` whichever module holds the code:

- :mod:`~pipelines.training.checks`: the input checks before the long pass (the
  incidents CSV, incidents against the telemetry's entities and time range);
- :mod:`~pipelines.training.dataset`: the settings, the rows (features from the engine),
  the time windows and the sample of calm rows taken while streaming;
- :mod:`~pipelines.training.feedback`: SREs' verdicts folded into the labels;
- :mod:`~pipelines.training.fit`: label, split, fit, judge, and the report.
"""

from __future__ import annotations

from pipelines.training.checks import (
    INCIDENT_REQUIRED,
    check_incidents_against,
    check_train_inputs,
    read_incidents,
    scan_entities,
)
from pipelines.training.dataset import (
    Dataset,
    StreamSample,
    TrainConfig,
    Windows,
    build_features,
    keep_negative,
    sim_frames,
    windows,
)
from pipelines.training.feedback import FALSE_ALARM_WEIGHT, FEEDBACK_COLUMNS, apply_feedback
from pipelines.training.fit import Progress, TrainResult, train_files, train_full, train_model

__all__ = [
    "FALSE_ALARM_WEIGHT",
    "FEEDBACK_COLUMNS",
    "INCIDENT_REQUIRED",
    "Dataset",
    "Progress",
    "StreamSample",
    "TrainConfig",
    "TrainResult",
    "Windows",
    "apply_feedback",
    "build_features",
    "check_incidents_against",
    "check_train_inputs",
    "keep_negative",
    "read_incidents",
    "scan_entities",
    "sim_frames",
    "train_files",
    "train_full",
    "train_model",
    "windows",
]
