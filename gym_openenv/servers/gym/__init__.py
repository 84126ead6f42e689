"""Any registered Gymnasium environment, served over OpenEnv's protocol."""

from gym_openenv.servers.gym.models import GymAction, GymObservation, GymState

__all__ = ["GymAction", "GymObservation", "GymState"]
