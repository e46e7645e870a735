"""Persistence: SQLAlchemy tables, engines and sessions, and the queries the layers above use."""
