"""Durable records (SQLAlchemy or SQLite): the audit trail, approvals, feedback, API keys."""
