"""Apache Kafka: the clients behind one adapter, the stream worker, and what reads topics.

:mod:`~pipelines.kafka.adapter` is the one client shape, implemented by
:mod:`~pipelines.kafka.client_python` (kafka-python, the default) and
:mod:`~pipelines.kafka.client_confluent` (confluent-kafka). The stream is
:mod:`~pipelines.kafka.stream` (one consumer group, one engine per telemetry partition,
:mod:`~pipelines.kafka.partition`, checkpointed by :mod:`~pipelines.kafka.checkpoint`).
:mod:`~pipelines.kafka.backend` feeds ``precovery serve`` from the topics,
:mod:`~pipelines.kafka.delivery` pushes recommendations.v1 to the orchestrator and
:mod:`~pipelines.kafka.sim` produces the simulated fleet. (Inside this package
``import kafka`` still means kafka-python: imports are absolute.)
"""
