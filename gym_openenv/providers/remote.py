"""A server someone else runs: any OpenEnv server at a URL, a Hugging Face Space included.

Example:
    >>> provider = RemoteProvider("https://owner-space.hf.space", token="hf_...")  # a remote Space  # doctest: +SKIP
    >>> env = gym.make("openenv/remote-v0", provider=provider)                     # doctest: +SKIP
    >>> hf_space_url("openenv/echo-env")
    'https://openenv-echo-env.hf.space'

:meth:`~RemoteProvider.start` waits for ``/health`` with exponential backoff
(a Space may be waking up, a pod may be scheduling) and sends the bearer
token with every request; :meth:`~RemoteProvider.stop` only forgets the
server: it was not ours to stop.
"""

import os
import re

from gym_openenv.endpoint import Endpoint
from gym_openenv.providers.base import Provider

__all__ = ["RemoteProvider", "hf_space_url"]


def hf_space_url(space: str) -> str:
    """The direct URL of a Hugging Face Space, ``"owner/name"`` -> ``https://owner-name.hf.space``.

    Spaces serve under that host (lower case, ``_`` and ``.`` become ``-``); the
    ``huggingface.co/spaces/...`` page only embeds it.
    """
    space = space.removeprefix("https://huggingface.co/spaces/").strip("/")
    owner, sep, name = space.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise ValueError(f"space must be 'owner/name', got {space!r}")
    return "https://" + re.sub(r"[_.]", "-", f"{owner}-{name}".lower()) + ".hf.space"


class RemoteProvider(Provider):
    """Connect to a running OpenEnv server.

    Args:
        url: its base URL (``http(s)://host:port``, ``http+unix:///path.sock``).
        token: bearer token sent with the health checks (default ``$OPENENV_TOKEN``;
            the environment sends it on every request).
        connect_timeout: total seconds to keep retrying ``/health``.
        backoff: first delay between attempts; it doubles up to ``max_backoff``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        connect_timeout: float = 60.0,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ):
        self.url = Endpoint.parse(url).url  # checks the scheme
        self.token = token or os.environ.get("OPENENV_TOKEN")
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        #: /health requests the last successful start() needed
        self.attempts = 0

    def start(self) -> str:
        if self.base_url is not None:
            return self.base_url
        endpoint = Endpoint.parse(self.url, self.token)
        self.attempts = endpoint.wait_healthy(self.connect_timeout, backoff=self.backoff, max_backoff=self.max_backoff)
        self.base_url = self.url
        return self.base_url

    def health(self, timeout: float = 5.0) -> bool:
        return Endpoint.parse(self.url, self.token).health(timeout)

    def stop(self) -> None:
        self.base_url = None
