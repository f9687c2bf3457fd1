from django.db import migrations, models


class Migration(migrations.Migration):
    """Tombstones a process could not write to the cache, kept where every process finds them.

    A new table: the published 2.x package neither reads nor needs it, so it can still serve beside this version.
    """

    dependencies = [
        ("qsessions", "0004_session_user_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="OwedTombstone",
            fields=[
                ("session_key", models.CharField(max_length=40, primary_key=True, serialize=False)),
                ("keep_until", models.DateTimeField()),
            ],
        ),
    ]
