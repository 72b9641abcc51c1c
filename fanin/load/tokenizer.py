"""`--tokenizer FILE`: count output (and synthetic input) tokens with the model's own
tokenizer, read from a local `tokenizer.json` (the Hugging Face format) by the `tokenizers`
package. Nothing is ever downloaded: without a file, request mode counts one token per
content chunk and prefers the server's `usage` count when it sends one."""

from __future__ import annotations

from fanin.errors import UsageError

__all__ = ["TokenCounter", "load_tokenizer"]


class TokenCounter:
    """A loaded tokenizer: `count(text)` tokens, `encode`/`decode` for synthetic prompts."""

    def __init__(self, path: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise UsageError("--tokenizer needs the tokenizers package (pip install tokenizers)") from None
        try:
            self._tok = Tokenizer.from_file(path)
        except FileNotFoundError:
            raise UsageError(f"--tokenizer: cannot read {path}: no such file") from None
        except Exception as exc:  # the Rust side raises plain Exceptions on a bad file
            first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise UsageError(f"--tokenizer: {path} is not a tokenizer.json ({first[:120]})") from None
        self.path = path

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids)

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)


def load_tokenizer(path: str | None) -> TokenCounter | None:
    return TokenCounter(path) if path else None
