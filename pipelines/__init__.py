"""Streaming and training pipelines: the edges that move data (Kafka, files, MLflow)."""
