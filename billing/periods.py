"""Spend periods, all in UTC: daily, weekly (ISO week, from Monday 00:00), monthly (calendar
month) and total (since the beginning of time).

A period is named by its start, so nothing ever has to be reset: a new period simply uses a new
counter, and a charge lands in the period in which its generation started.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

DAILY = "daily"
WEEKLY = "weekly"
MONTHLY = "monthly"
TOTAL = "total"
PERIODS = (DAILY, WEEKLY, MONTHLY, TOTAL)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("naive datetime: spend periods need an aware time")
    return at.astimezone(UTC)


def period_start(period: str, at: datetime) -> datetime:
    at = _utc(at)
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == DAILY:
        return midnight
    if period == WEEKLY:
        return midnight - timedelta(days=midnight.weekday())
    if period == MONTHLY:
        return midnight.replace(day=1)
    if period == TOTAL:
        return EPOCH
    raise ValueError(f"unknown spend period {period!r}")


def period_bounds(period: str, at: datetime) -> tuple[datetime, datetime | None]:
    """[start, end) of the period containing `at`; end is None for "total"."""
    start = period_start(period, at)
    if period == DAILY:
        return start, start + timedelta(days=1)
    if period == WEEKLY:
        return start, start + timedelta(days=7)
    if period == MONTHLY:
        if start.month == 12:
            return start, start.replace(year=start.year + 1, month=1)
        return start, start.replace(month=start.month + 1)
    return start, None


def period_tag(period: str, start: datetime) -> str:
    """A short, unique name for one period of one kind (for counter keys)."""
    if period == TOTAL:
        return "t"
    return f"{period[0]}{start:%Y%m%d}"
