from __future__ import annotations

from django.core.management.base import BaseCommand

from observability.services import request_logs_purge


class Command(BaseCommand):
    help = "Delete request logs older than the retention period (LOG_RETENTION_DAYS), in batches."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, help="Keep this many days instead.")

    def handle(self, *args, days=None, **options):
        purged = request_logs_purge(days=days)
        self.stdout.write(f"purged {purged} request logs")
