"""The API's routes, one module per group; each adds its routes to an ``APIRouter``.

``ops`` (probes, status, Prometheus), ``scoring`` (what orchestrators read: views,
recommendations and their event stream, what-if scoring), ``sre`` (alerts, feedback,
the audit trail, approvals), ``admin`` (API keys), ``console`` (the console page and
Swagger UI). :func:`serve.app.create_app` adds them to the app's own router in that
order, with ``/metrics`` last.

They are added to the app's router rather than built as routers of their own and included
with ``app.include_router``: FastAPI 0.165 serves an included router's routes through an
extra layer, about 20 µs more per request (17-30% of ``/healthz`` and of a cached
``/v1/systems/{system}``, measured in-process through the ASGI app, no server; medians of
9 interleaved rounds of 400 requests) — on the routes orchestrators poll.
"""
