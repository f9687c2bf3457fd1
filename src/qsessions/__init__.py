"""Extended session backends for Django: sessions that know their user, client, device and location."""

__version__ = "3.0.0.dev0"

#: Key under which the client's IP address is kept inside the session payload.
IP_SESSION_KEY = "_qsessions_ip"
#: Key under which the client's user agent is kept inside the session payload.
USER_AGENT_SESSION_KEY = "_qsessions_user_agent"
