"""Celery tasks that could not reach the broker, kept in the database and sent again later."""
