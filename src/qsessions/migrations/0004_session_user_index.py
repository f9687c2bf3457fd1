from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """The user's own index goes: ``qsessions_user_activity`` starts with ``user_id`` and serves the same lookups."""

    dependencies = [
        ("qsessions", "0003_session_last_activity"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="session",
            name="user",
            field=models.ForeignKey(db_index=False, null=True, on_delete=models.CASCADE, to=settings.AUTH_USER_MODEL),
        ),
    ]
