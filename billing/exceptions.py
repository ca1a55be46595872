from __future__ import annotations


class BillingError(Exception):
    """A refused money operation, with a message fit to show the person who asked for it."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
