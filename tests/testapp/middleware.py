from qsessions.middleware import SessionMiddleware


class CustomSessionMiddleware(SessionMiddleware):
    """A site's own subclass, which the checks must accept."""
