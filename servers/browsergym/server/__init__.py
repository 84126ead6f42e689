"""Server side of the BrowserGym environment."""

from servers.browsergym.server.environment import BrowserGymEnvironment

__all__ = ["BrowserGymEnvironment"]
