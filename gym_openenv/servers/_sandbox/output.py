"""Capturing a sandboxed program's output: a byte cap per stream, and text that fits a ``Text`` space."""

from gym_openenv.spaces import DEFAULT_CHARSET

__all__ = ["OutputCapture", "text_length_bound", "to_space_text"]

_ALLOWED = frozenset(DEFAULT_CHARSET)


def text_length_bound(byte_limit: int) -> int:
    """The longest :meth:`OutputCapture.text` for a byte limit: a byte becomes at most
    six characters (an invalid byte is escaped as ``\\ufffd``), plus the truncation note."""
    return 6 * byte_limit + 128


class OutputCapture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int):
        self.limit = limit
        self.data = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        self.data += chunk[: max(room, 0)]
        self.dropped += max(len(chunk) - room, 0)

    @property
    def over_limit(self) -> bool:
        return self.dropped > 0

    def text(self) -> str:
        """The captured bytes as space-safe text, with a note when some were cut."""
        out = to_space_text(self.data.decode("utf-8", errors="replace"))
        if self.dropped:
            out += f"\n[output truncated: {self.dropped} more bytes not shown]"
        return out


def to_space_text(text: str) -> str:
    """Escape characters outside the ``Text`` space's charset (``\\x1b``, ``\\u4e2d``), so
    every observation is inside its space; common output passes through unchanged."""
    if all(c in _ALLOWED for c in text):
        return text
    return "".join(c if c in _ALLOWED else c.encode("unicode_escape").decode("ascii") for c in text)
