"""Framework for environment servers: the Environment interface and the app."""

from gym_openenv.server.environment import Environment, EnvironmentMetadata, FieldSpaces

__all__ = ["Environment", "EnvironmentMetadata", "FieldSpaces", "create_app"]


def __getattr__(name: str):
    # create_app pulls in FastAPI; environments import this package without it.
    if name == "create_app":
        from gym_openenv.server.app import create_app

        return create_app
    raise AttributeError(name)
