"""Small async clients, one per daemon, used by other daemons and by the CLI."""

from .base import ServiceClient, UpstreamError

__all__ = ["ServiceClient", "UpstreamError"]
