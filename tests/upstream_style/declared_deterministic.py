"""Our echo server, declaring in ``/metadata`` that equal seeds give equal episodes.

Run: ``uvicorn declared_deterministic:app`` from this folder.
"""

import dataclasses

from gym_openenv.server import create_app
from gym_openenv.servers.echo.server.environment import EchoEnvironment


class DeclaredDeterministicEcho(EchoEnvironment):
    def metadata(self):
        return dataclasses.replace(super().metadata(), extra={"deterministic": True})


app = create_app(DeclaredDeterministicEcho)
