"""What Precovery pushes out: recommendations to the orchestrator, alerts to Alertmanager.

:mod:`~pipelines.outbound.orchestrator` is the durable, fenced, retried outbox and its
HTTP push; :mod:`~pipelines.outbound.alertmanager` fires, re-posts and resolves alerts.
"""
