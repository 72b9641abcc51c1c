"""`--input-tokens MEAN[,STDDEV]` / `--output-tokens MEAN[,STDDEV]`: synthetic request bodies
for request mode, as vLLM's random dataset and GuideLLM's synthetic data do, so a model
server can be loaded without a dataset file.

Each prompt's length and each answer's length (`max_tokens`) are drawn from a normal
distribution (rounded, at least 1 token) with a seeded generator (`--seed`, default 0), so
two runs with one seed send the same bodies. Prompts are common English words: with
`--tokenizer FILE` a prompt is cut to exactly its drawn length in that tokenizer's tokens;
without one each word stands for one token (close for BPE vocabularies, not exact). The
bodies are built once, before the load, and sent in order (cycled)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from fanin.errors import UsageError
from fanin.load.dataset import DatasetItem

__all__ = ["LengthDist", "parse_lengths", "synthetic_items", "DEFAULT_INPUT", "DEFAULT_OUTPUT",
           "DEFAULT_MODEL", "MAX_PROMPTS"]

DEFAULT_MODEL = "fanin-test"
MAX_PROMPTS = 10_000  # bodies built up front; a longer run cycles them
DEFAULT_PROMPTS = 1_000
MAX_TOKENS = 1_000_000

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there one all we their can has more when will would if so out no what up said "
    "about into than them time only new some could these two may first then do any like my now over such "
    "our man me even most made after also did many before must through back years where much your way well"
).split()


@dataclass(frozen=True)
class LengthDist:
    mean: int
    stddev: float = 0.0

    def draw(self, rng: random.Random) -> int:
        if not self.stddev:
            return self.mean
        return max(1, round(rng.gauss(self.mean, self.stddev)))

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev}


DEFAULT_INPUT = LengthDist(128)
DEFAULT_OUTPUT = LengthDist(128)


def parse_lengths(text: str | None, option: str) -> LengthDist | None:
    """'128' or '128,32' (mean, standard deviation) -> LengthDist."""
    if text is None:
        return None
    mean_text, _, std_text = text.partition(",")
    try:
        mean = int(mean_text.strip())
        stddev = float(std_text) if std_text.strip() else 0.0
    except ValueError:
        raise UsageError(f"{option}: cannot read {text!r} (expected MEAN or MEAN,STDDEV in tokens, e.g. 128,32)") from None
    if not 1 <= mean <= MAX_TOKENS:
        raise UsageError(f"{option}: the mean must be between 1 and {MAX_TOKENS:,} tokens, got {mean}")
    if not 0 <= stddev <= MAX_TOKENS:
        raise UsageError(f"{option}: the standard deviation must be 0 or more, got {std_text.strip()}")
    return LengthDist(mean, stddev)


def _prompt(rng: random.Random, length: int, tokenizer) -> str:
    if tokenizer is None:
        return " ".join(rng.choice(_WORDS) for _ in range(length))
    words: list[str] = []
    ids: list[int] = []
    while len(ids) < length:  # words until the prompt holds enough tokens, then cut to length
        words.extend(rng.choice(_WORDS) for _ in range(max(8, length - len(ids))))
        ids = tokenizer.encode(" ".join(words))
    return tokenizer.decode(ids[:length])


def _body(api: str, model: str, prompt: str, max_tokens: int | None, k: int) -> dict[str, Any]:
    if api == "anthropic":
        return {"model": model, "max_tokens": max_tokens, "stream": True,
                "messages": [{"role": "user", "content": prompt}]}
    if api == "dify":
        return {"inputs": {}, "query": prompt, "response_mode": "streaming", "user": f"fanin-load-{k}"}
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}}


def synthetic_items(api: str, *, model: str, input_tokens: LengthDist, output_tokens: LengthDist | None,
                    count: int, seed: int, tokenizer=None, headers: tuple[tuple[str, str], ...] = ()
                    ) -> list[DatasetItem]:
    """`count` request bodies for `api` (openai | anthropic | dify), drawn with `seed`."""
    rng = random.Random(seed)
    items = []
    for k in range(count):
        prompt = _prompt(rng, input_tokens.draw(rng), tokenizer)
        max_tokens = output_tokens.draw(rng) if output_tokens is not None else None
        items.append(DatasetItem(orjson.dumps(_body(api, model, prompt, max_tokens, k)), headers))
    return items
