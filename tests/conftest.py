"""Shared fixtures: real server processes on loopback."""

import pytest

import gym_openenv  # noqa: F401  (registers the ids)
from gym_openenv.providers import LocalProcessProvider

ECHO = "gym_openenv.servers.echo.server.environment:EchoEnvironment"


@pytest.fixture(scope="module")
def echo_server():
    """A real echo server process for the module; yields its base URL."""
    with LocalProcessProvider(ECHO, server_args=["--max-sessions", "64"]) as provider:
        yield provider.base_url
