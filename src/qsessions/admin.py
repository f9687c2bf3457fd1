from __future__ import annotations

from pprint import pformat
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin
from django.contrib.admin.utils import display_for_field, display_for_value
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from qsessions.models import Session

if TYPE_CHECKING:
    from django.db.models import Field

#: Django's names for the model and two of its fields (``AbstractBaseSession``) are translated in the catalogue of
#: ``django.contrib.sessions``, which a site leaves out of ``INSTALLED_APPS`` with qsessions: marked here, they are
#: in this app's catalogue too.
_DJANGO_SESSION_NAMES = (
    gettext_noop("session"),
    gettext_noop("sessions"),
    gettext_noop("session key"),
    gettext_noop("expire date"),
)


class ActiveFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "active"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, Any]]:
        return [("1", _("Active")), ("0", _("Expired"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Session]) -> QuerySet[Session] | None:
        if self.value() == "1":
            return queryset.active()  # type: ignore[attr-defined, no-any-return]
        if self.value() == "0":
            return queryset.expired()  # type: ignore[attr-defined, no-any-return]
        return None


class OwnerFilter(admin.SimpleListFilter):
    title = _("owner")
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, Any]]:
        return [("my", _("My sessions"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Session]) -> QuerySet[Session] | None:
        if self.value() == "my":
            # The admin's user is signed in: its pk is never None, whatever django-stubs says.
            mine: QuerySet[Session] = queryset.filter(user_id=request.user.pk)  # type: ignore[misc]
            return mine
        return None


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Sessions can be looked at and deleted (which signs their client out), never edited or added."""

    # The fields without a verbose name (created_at, updated_at, user_agent) and the model's properties are shown
    # through methods below: their column titles are then translated.
    list_display = ("ip", "linked_user", "is_active", "created", "updated", "expire_date", "device", "location")
    list_select_related = ("user",)
    list_filter = (ActiveFilter, OwnerFilter)
    ordering = ("-expire_date",)
    fields = (
        "linked_user",
        "ip",
        "location",
        "is_active",
        "created",
        "updated",
        "expire_date",
        "agent",
        "device",
        "session_key",
        "decoded_data",
    )
    readonly_fields = fields

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        user_model = get_user_model()
        return ["ip", f"user__{user_model.USERNAME_FIELD}", f"user__{user_model.get_email_field_name()}"]

    @admin.display(description=_("user"), ordering="user")
    def linked_user(self, obj: Session) -> str:
        if obj.user is None:
            return "-"
        meta = obj.user._meta
        try:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.user.pk])
        except NoReverseMatch:
            return str(obj.user)
        return format_html('<a href="{}">{}</a>', url, obj.user)

    def _field(self, obj: Session, name: str) -> str:
        """The field as the admin shows it where the field itself is listed."""
        field = cast("Field[Any, Any]", obj._meta.get_field(name))
        return str(display_for_field(getattr(obj, name), field, self.get_empty_value_display()))

    @admin.display(description=_("created at"), ordering="created_at")
    def created(self, obj: Session) -> str:
        return self._field(obj, "created_at")

    @admin.display(description=_("updated at"), ordering="updated_at")
    def updated(self, obj: Session) -> str:
        return self._field(obj, "updated_at")

    @admin.display(description=_("user agent"))
    def agent(self, obj: Session) -> str:
        return self._field(obj, "user_agent")

    @admin.display(description=_("device"))
    def device(self, obj: Session) -> str:
        return str(display_for_value(obj.device, self.get_empty_value_display()))

    @admin.display(description=_("location"))
    def location(self, obj: Session) -> str:
        return str(display_for_value(obj.location, self.get_empty_value_display()))

    @admin.display(description=_("active"), boolean=True)
    def is_active(self, obj: Session) -> bool:
        return obj.is_active

    @admin.display(description=_("session data"))
    def decoded_data(self, obj: Session) -> str:
        return format_html('<pre style="white-space: pre-wrap; direction: ltr;">{}</pre>', pformat(obj.get_decoded()))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Session | None = None) -> bool:
        return False
