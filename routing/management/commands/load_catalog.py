"""`manage.py load_catalog`: load routing/catalog/catalog.json (idempotent)."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand

from routing import services


class Command(BaseCommand):
    help = "Load the model catalog (models, providers, endpoints, prices) from its data file."

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, default=services.CATALOG_FILE)

    def handle(self, *args, file: Path, **options):
        counts = services.catalog_load(data=json.loads(file.read_text()))
        self.stdout.write(
            f"catalog: {counts['models']} models, {counts['providers']} providers, "
            f"{counts['endpoints']} endpoints ({counts['changed']} changed)"
        )
