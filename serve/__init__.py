"""The HTTP service (FastAPI): scoring endpoint, metrics, operator views."""
