import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class UUIDUser(AbstractUser):
    """A user whose primary key is a UUID (``QSESSIONS_TEST_USER_MODEL=uuid``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)

    class Meta:
        swappable = "AUTH_USER_MODEL"
