"""OpenSpiel games (pyspiel) as an OpenEnv server: one seat for the client, the
other seats played inside the server, or every seat for the client (self-play)."""

from gym_openenv.servers.openspiel.models import (
    OpenSpielAction,
    OpenSpielObservation,
    OpenSpielState,
)

__all__ = ["OpenSpielAction", "OpenSpielObservation", "OpenSpielState"]
