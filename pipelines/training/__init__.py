"""The model's life cycle: training from incident history, MLflow tracking and the
registry, evaluation against baselines, the champion, and where a model is loaded from."""
