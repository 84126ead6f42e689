"""Any registered Gymnasium environment, served over OpenEnv's protocol."""

from servers.gym.models import GymAction, GymObservation, GymState

__all__ = ["GymAction", "GymObservation", "GymState"]
