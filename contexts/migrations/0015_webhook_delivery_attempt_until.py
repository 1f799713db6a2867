from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("contexts", "0014_projects"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookdelivery",
            name="attempt_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
