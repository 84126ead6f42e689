"""Server side of the BrowserGym environment."""

from gym_openenv.servers.browsergym.server.environment import BrowserGymEnvironment

__all__ = ["BrowserGymEnvironment"]
