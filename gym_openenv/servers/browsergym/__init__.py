"""BrowserGym environment server: MiniWoB++ tasks on headless Chromium."""

from gym_openenv.servers.browsergym.models import (
    BrowserGymAction,
    BrowserGymObservation,
    BrowserGymState,
)

__all__ = ["BrowserGymAction", "BrowserGymObservation", "BrowserGymState"]
