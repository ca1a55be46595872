"""The plans every installation starts with. Plans are data: change them in the admin."""

from __future__ import annotations

from django.db import migrations

PLANS = [
    {
        "slug": "prepaid",
        "name": "Prepaid credits",
        "kind": "prepaid",
        "free_grant_nanousd": 1_000_000_000,  # $1 of free starting credit
        "default_monthly_limit_nanousd": None,
        "is_default": True,
    },
    {
        "slug": "postpaid-metered",
        "name": "Postpaid, metered",
        "kind": "postpaid",
        "free_grant_nanousd": 0,
        "default_monthly_limit_nanousd": 1_000_000_000_000,  # $1,000 a month until raised
        "is_default": False,
    },
]


def create_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for plan in PLANS:
        Plan.objects.update_or_create(slug=plan["slug"], defaults=plan)


def remove_plans(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    Plan.objects.filter(slug__in=[p["slug"] for p in PLANS], accounts__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(create_plans, remove_plans)]
