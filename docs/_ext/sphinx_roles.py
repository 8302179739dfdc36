"""A griffe extension for the API reference: the docstrings' Sphinx roles (``:func:`x```,
``:class:`~a.b.C```, ...) rendered as inline code, as Sphinx would show them."""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

# :role:`target` or :role:`~dotted.target` (the tilde: show the last name only)
ROLE = re.compile(r":(?:func|meth|class|mod|data|attr|obj|exc):`(~?)([^`]+)`")


def _code(match: re.Match[str]) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(Extension):
    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_code, obj.docstring.value)
