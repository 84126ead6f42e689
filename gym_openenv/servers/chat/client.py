"""A typed client for the chat server, in OpenEnv's style.

Example:
    >>> from gym_openenv.servers.chat.client import ChatEnv
    >>> from gym_openenv.servers.chat.models import ChatAction
    >>> from gym_openenv.servers.chat.server.tokenizer import ChatTokenizer
    >>> with ChatEnv.launch(task="arithmetic").sync() as env:
    ...     first = env.reset(seed=0).observation
    ...     answer = first.task_info["question"]["answer"]
    ...     ids = ChatTokenizer().encode(answer)
    ...     env.step(ChatAction(tokens=ids + [0] * (32 - len(ids)), length=len(ids))).reward
    1.0
"""

from gym_openenv.client import EnvClient
from gym_openenv.servers.chat.models import ChatAction, ChatObservation, ChatState

__all__ = ["ChatEnv"]


class ChatEnv(EnvClient[ChatAction, ChatObservation, ChatState]):
    action_type = ChatAction
    observation_type = ChatObservation
    state_type = ChatState
