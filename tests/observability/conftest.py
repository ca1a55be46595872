"""Observability fixtures. Helpers are in helpers.py."""
