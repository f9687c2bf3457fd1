from typing import Any

from django.db import migrations, models


def backfill(apps: Any, schema_editor: Any) -> None:
    # A session's last save is the best guess at its last activity.
    Session = apps.get_model("qsessions", "Session")
    Session.objects.using(schema_editor.connection.alias).filter(last_activity=None).update(
        last_activity=models.F("updated_at")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("qsessions", "0002_session_created_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="session", name="last_activity", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(fields=["user", "-last_activity"], name="qsessions_user_activity"),
        ),
    ]
