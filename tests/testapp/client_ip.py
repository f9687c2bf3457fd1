"""Functions for ``QSESSIONS_CLIENT_IP`` in tests: a header a CDN sets, and what a buggy function might return."""

from django.http import HttpRequest


def cf_connecting_ip(request: HttpRequest) -> str | None:
    return request.META.get("HTTP_CF_CONNECTING_IP")


def not_an_address(request: HttpRequest) -> object:
    return request.META.get("HTTP_X_TEST_VALUE", 42)


NOT_CALLABLE = "cf_connecting_ip"
