"""The edges that move data, grouped by edge; the pure core is :mod:`predictor`.

- :mod:`pipelines.driver`: the one path from input records to output records, for every
  mode (embedded, Kafka, replay, detect, backtest); :mod:`pipelines.settings`: one
  ``Settings`` from ``PRECOVERY_*``.
- :mod:`pipelines.embedded`: the in-process stream, its in-memory edges, the demo.
- :mod:`pipelines.kafka`: Kafka clients behind one adapter, the stream worker, topics.
- :mod:`pipelines.files`: telemetry tables, files as Source and Sink, topology files.
- :mod:`pipelines.offline`: detect, replay, backtest, detector evaluation.
- :mod:`pipelines.outbound`: the orchestrator push, Alertmanager.
- :mod:`pipelines.records`: audit trail, approvals, feedback, API keys (SQL).
- :mod:`pipelines.training`: training, MLflow tracking and registry, the champion.
- :mod:`pipelines.cli`: the ``precovery`` command line, one module per topic.
"""
