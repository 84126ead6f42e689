"""Train the shipped tokenizer: ``python -m gym_openenv.servers.chat.server.build_tokenizer``.

A 1024-token byte-level BPE (GPT-2 style: any text encodes, no unknown
token) trained on ``corpus.txt`` (prose written for this repository) plus
conversations generated from the built-in tasks, so their questions and
answers tokenize compactly. Deterministic: rerunning rewrites the same file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from gym_openenv.servers.chat.server.tasks import ArithmeticTask, ConstrainedReplyTask
from gym_openenv.servers.chat.server.tokenizer import ASSISTANT, DEFAULT_TOKENIZER_PATH, END, SPECIAL_TOKENS, USER

CORPUS_PATH = Path(__file__).with_name("corpus.txt")
VOCAB_SIZE = 1024


def task_conversations(episodes: int = 2000, seed: int = 0) -> list[str]:
    """Rendered conversations of the built-in tasks with correct replies."""
    rng = np.random.default_rng(seed)
    arithmetic = ArithmeticTask(rounds=3)
    constrained = ConstrainedReplyTask(rounds=1)
    lines = []
    for _ in range(episodes):
        message = arithmetic.reset(rng)
        text = ""
        while message is not None:
            text += f"{USER}{message}{ASSISTANT}{arithmetic.answer}{END}"
            message = arithmetic.score(arithmetic.answer).message
        lines.append(text)
        question = constrained.reset(rng)
        lines.append(f"{USER}{question}{ASSISTANT}The {constrained.word} is here.{END}")
    return lines


def train(corpus: list[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,  # ids 0..3, <|pad|> first
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_TOKENIZER_PATH)
    args = parser.parse_args()
    corpus = CORPUS_PATH.read_text().splitlines() + task_conversations()
    tokenizer = train(corpus)
    tokenizer.save(str(args.output))
    print(f"wrote {args.output} ({tokenizer.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
