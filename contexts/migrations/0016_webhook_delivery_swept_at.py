from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("contexts", "0015_webhook_delivery_attempt_until"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="swept_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
