from django.apps import AppConfig
from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_save, pre_delete
from django.utils.translation import gettext_lazy as _


class QSessionsConfig(AppConfig):
    name = "qsessions"
    label = "qsessions"
    verbose_name = _("Sessions")
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from qsessions import checks, receivers  # noqa: F401  (checks registers the system checks)

        user_logged_in.connect(receivers.user_logged_in, dispatch_uid="qsessions.user_logged_in")
        post_save.connect(receivers.user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="qsessions.user_saved")
        pre_delete.connect(
            receivers.user_deleted, sender=settings.AUTH_USER_MODEL, dispatch_uid="qsessions.user_deleted"
        )
