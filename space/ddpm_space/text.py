"""The page's prose: Markdown files in space/text/ with {{name}} placeholders; numbers as the formulas show them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

TEXT_DIR = Path(__file__).resolve().parent.parent / "text"
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def text(name: str, **values: Any) -> str:
    """space/text/<name>.md with each {{key}} replaced by values[key] (LaTeX keeps its own braces)."""
    template = (TEXT_DIR / f"{name}.md").read_text(encoding="utf-8")

    def fill(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"space/text/{name}.md needs a value for {{{{{key}}}}}")
        return str(values[key])

    return re.sub(r"\{\{(\w+)\}\}", fill, template)


def fmt(value: float) -> str:
    """A number for the formulas: 4 significant digits, scientific notation when tiny."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{mantissa}·10{str(int(exponent)).translate(SUPERSCRIPTS)}"
