import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("contexts", "0012_extraction_run_cost_budget"),
    ]

    operations = [
        migrations.AddField(
            model_name="sessioncontext",
            name="update_policy",
            field=models.CharField(
                blank=True, db_default="", default="", max_length=32,
                help_text="every_turn, every_n_turns:N, idle:S or tokens:T; empty for the installation's default.",
                validators=[django.core.validators.RegexValidator(
                    "^(?:every_turn|every_n_turns:[1-9]\\d{0,5}|idle:[1-9]\\d{0,6}|tokens:[1-9]\\d{0,7})$",
                    "every_turn, every_n_turns:N, idle:S or tokens:T")],
            ),
        ),
    ]
