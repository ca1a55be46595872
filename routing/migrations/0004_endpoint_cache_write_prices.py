"""Cache-write prices per endpoint. Existing rows start at their input price (what they were
billed at until now); `manage.py load_catalog` then sets the catalog's real prices."""

from django.db import migrations, models
from django.db.models import F


def copy_input_price(apps, schema_editor):
    Endpoint = apps.get_model("routing", "Endpoint")
    Endpoint.objects.update(
        cache_write_price=F("input_price"), cache_write_1h_price=F("input_price")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0003_batches"),
    ]

    operations = [
        migrations.AddField(
            model_name="endpoint",
            name="cache_write_price",
            field=models.BigIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="endpoint",
            name="cache_write_1h_price",
            field=models.BigIntegerField(null=True),
        ),
        migrations.RunPython(copy_input_price, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="endpoint",
            name="cache_write_price",
            field=models.BigIntegerField(),
        ),
        migrations.AlterField(
            model_name="endpoint",
            name="cache_write_1h_price",
            field=models.BigIntegerField(),
        ),
        migrations.RemoveConstraint(
            model_name="endpoint",
            name="routing_endpoint_prices_nonnegative",
        ),
        migrations.AddConstraint(
            model_name="endpoint",
            constraint=models.CheckConstraint(
                condition=models.Q(input_price__gte=0)
                & models.Q(cached_input_price__gte=0)
                & models.Q(cache_write_price__gte=0)
                & models.Q(cache_write_1h_price__gte=0)
                & models.Q(output_price__gte=0)
                & models.Q(reasoning_price__gte=0),
                name="routing_endpoint_prices_nonnegative",
            ),
        ),
    ]
