"""The BrowserGym server app: ``uvicorn gym_openenv.servers.browsergym.server.app:app``.

The task and its settings come from ``OPENENV_ENV_KWARGS`` (JSON), e.g.
``OPENENV_ENV_KWARGS='{"task": "miniwob.enter-text"}'``; the default is
``miniwob.click-test``. All sessions share one Chromium process.
"""

from gym_openenv.server import create_app
from gym_openenv.servers.browsergym.server.environment import BrowserGymEnvironment

app = create_app(BrowserGymEnvironment)
