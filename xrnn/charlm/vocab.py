"""The character vocabulary: index 0 is the end-of-name newline, then the characters sorted."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

__all__ = ["EOS", "Vocabulary", "printable"]

EOS = "\n"


def printable(c: str) -> bool:
    """Whether the character ``c`` may be part of a name: not a control character (which a
    terminal would act on: ESC, BEL, CR) nor a lone surrogate (which cannot even be encoded).
    Names and a model's vocabulary (the end-of-name newline aside) are made of these."""
    return unicodedata.category(c) not in ("Cc", "Cs")


class Vocabulary:
    """Characters ↔ indices. ``chars[0]`` is always the newline that ends every name."""

    def __init__(self, chars: Iterable[str]) -> None:
        chars = list(chars)
        if not chars or chars[0] != EOS or len(set(chars)) != len(chars):
            raise ValueError("a vocabulary is a newline followed by distinct characters")
        if any(len(c) != 1 for c in chars):
            raise ValueError("every vocabulary entry must be a single character")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Vocabulary:
        return cls([EOS, *sorted(set("".join(names)) - {EOS})])

    def __len__(self) -> int:
        return len(self.chars)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.chars == other.chars

    def encode(self, name: str) -> list[int]:
        """Indices of ``name``'s characters; a character outside the vocabulary is an error."""
        try:
            return [self.index[c] for c in name]
        except KeyError as exc:
            raise ValueError(
                f"name {name!r} has the character {exc.args[0]!r}, which is not in the "
                f"model's vocabulary {''.join(self.chars[1:])!r}"
            ) from None

    def decode(self, indices: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in indices)
