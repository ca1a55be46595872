from django.db import migrations, models


def postpaid_rate_limits(apps, schema_editor):
    # Postpaid organizations are invoiced afterwards: ten times the prepaid plan's room.
    Plan = apps.get_model("billing", "Plan")
    Plan.objects.filter(kind="postpaid").update(rpm_limit=10_000, tpm_limit=200_000_000)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0007_usage_outbox"),
    ]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="rpm_limit",
            field=models.PositiveIntegerField(default=1000, verbose_name="requests per minute"),
        ),
        migrations.AddField(
            model_name="plan",
            name="tpm_limit",
            field=models.PositiveIntegerField(default=20000000, verbose_name="tokens per minute"),
        ),
        migrations.AddField(
            model_name="billingaccount",
            name="rpm_limit_override",
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name="requests per minute (override)"
            ),
        ),
        migrations.AddField(
            model_name="billingaccount",
            name="tpm_limit_override",
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name="tokens per minute (override)"
            ),
        ),
        migrations.RunPython(postpaid_rate_limits, migrations.RunPython.noop),
    ]
