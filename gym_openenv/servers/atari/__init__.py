"""Atari 2600 games through the Arcade Learning Environment (ale-py)."""

from gym_openenv.servers.atari.models import AtariAction, AtariObservation, AtariState

__all__ = ["AtariAction", "AtariObservation", "AtariState"]
