"""Train/serve parity: the training path's features equal the stream's, row for row.

The same 45 simulated minutes go once through the stream's path (telemetry.v1 JSON
decoded, micro-batches of 500, decisions on) and once through the training path
(``build_features`` over history frames of another chunking, decisions off).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.training.train import build_features
from predictor.engine import Engine, EngineConfig
from predictor.features import DEFAULT_METRICS
from tests.factories import SimStream, decode
from tests.unit.test_engine import split


def test_training_features_equal_the_streams_on_the_same_events(
    failure_stream: SimStream,
) -> None:
    events = failure_stream.events
    engine = Engine(EngineConfig(), critical=failure_stream.critical)
    batch = decode(events, engine.config.metric_names)
    xs, keys, ts = [], [], []
    for sub in split(batch, 500):
        res = engine.process(sub, collect_features=True)
        assert res.features is not None and res.ts_ms is not None
        xs.append(res.features)
        keys.extend(res.keys)
        ts.append(res.ts_ms)
    stream_x, stream_ts = np.concatenate(xs), np.concatenate(ts)

    table = pd.DataFrame(
        [
            {
                "ts": e["ts"],
                "system": e["system"],
                "component": e["component"],
                "host": e["host"],
                **e["metrics"],
            }
            for e in events
        ]
    )
    chunks = [table.iloc[lo : lo + 777] for lo in range(0, len(table), 777)]
    data = build_features(chunks, DEFAULT_METRICS, stride=1)

    assert data.feature_names == engine.feature_names
    assert data.keys == keys
    np.testing.assert_array_equal(data.ts_ms, stream_ts)
    np.testing.assert_array_equal(data.x, stream_x)  # NaN where NaN, bit for bit elsewhere
