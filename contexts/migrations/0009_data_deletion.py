from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('contexts', '0008_extraction_run_request_id'),
    ]

    operations = [
        migrations.CreateModel(
            name='DataDeletion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('retention', 'Retention'), ('erasure', 'Erasure by end user')], max_length=16)),
                ('criteria', models.JSONField(default=dict)),
                ('counts', models.JSONField(default=dict)),
                ('actor', models.CharField(max_length=255)),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
            ],
            options={
                'verbose_name': 'data deletion',
                'ordering': ['-created_at', '-id'],
            },
        ),
    ]
