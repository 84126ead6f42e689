"""The chat environment's tokenizer: the shipped byte-level BPE or any local one.

``tokenizer.json`` beside this module is a 1024-token byte-level BPE trained
offline by ``build_tokenizer.py`` on text written in this repository. Any
``tokenizer.json`` (or a Hugging Face tokenizer directory holding one) can
replace it through ``tokenizer_path=``; nothing is downloaded.

Conversations are rendered as ``<|user|>message<|assistant|>reply<|end|>...``.
A tokenizer without these special tokens still works: the markers are then
ordinary text to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

__all__ = ["ASSISTANT", "DEFAULT_TOKENIZER_PATH", "END", "PAD", "SPECIAL_TOKENS", "USER", "ChatTokenizer"]

DEFAULT_TOKENIZER_PATH = Path(__file__).with_name("tokenizer.json")
PAD, END, USER, ASSISTANT = "<|pad|>", "<|end|>", "<|user|>", "<|assistant|>"
SPECIAL_TOKENS = [PAD, END, USER, ASSISTANT]


class ChatTokenizer:
    """Text <-> token ids for one tokenizer file."""

    def __init__(self, path: str | Path | None = None):
        path = Path(path) if path is not None else DEFAULT_TOKENIZER_PATH
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise ValueError(f"tokenizer_path: no tokenizer.json at {path}")
        self.path = path
        self.tokenizer = Tokenizer.from_file(str(path))
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        # Padding must be a real token id: <|pad|> if the tokenizer has it, else 0.
        pad = self.tokenizer.token_to_id(PAD)
        self.pad_id = 0 if pad is None else pad

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def user_turn(self, message: str) -> list[int]:
        """Tokens of a user message, up to where the assistant starts replying."""
        return self.encode(f"{USER}{message}{ASSISTANT}")

    def end_of_reply(self) -> list[int]:
        return self.encode(END)
