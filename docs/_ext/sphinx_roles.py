"""A griffe extension for the API reference: the docstrings' Sphinx roles (``:func:`x```,
``:class:`~a.b.C```, ...) rendered as inline code, as Sphinx would show them, and their
reStructuredText literals (double backticks) as Markdown's (single), which the reference's
parameter types show as they are."""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

# :role:`target` or :role:`~dotted.target` (the tilde: show the last name only)
ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|obj|exc):`(~?)([^`]+)`")
LITERAL = re.compile(r"``([^`]+)``")


def _code(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(Extension):
    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = ROLE.sub(_code, obj.docstring.value)
            obj.docstring.value = LITERAL.sub(r"`\1`", text)
