"""Small Markdown helpers for the app's pages (plain functions, no Streamlit)."""

from __future__ import annotations

import math

__all__ = ["bold", "number_with_unit", "finetune_summary"]

_MARKDOWN_SPECIAL = "\\`*_{}[]<>#+!|"


def _escape(text: str) -> str:
    return "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in text)


def bold(text: str) -> str:
    """``**text**`` with the text escaped and trimmed: Markdown renders ``**0.28 **`` (a space before the closing
    marker) literally, asterisks and all."""
    text = " ".join(str(text).split())
    return f"**{_escape(text)}**" if text else ""


def number_with_unit(value: float, unit: str | None = "", digits: int = 4) -> str:
    """``0.2792 eV/atom``, ``0.2792`` without a unit, ``n/a`` for NaN/None."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return " ".join(p for p in (f"{value:.{digits}g}", (unit or "").strip()) if p)


def finetune_summary(val_mae: float, start_mae: float, unit: str | None, epochs: int, n_train: int,
                     n_val: int) -> str:
    """The Fine-tune page's one-line result: final validation MAE in bold, the epoch-0 MAE, the split sizes."""
    return (f"Validation MAE {bold(number_with_unit(val_mae, unit))} after {epochs} epoch(s), from "
            f"{number_with_unit(start_mae, unit)} before training ({n_train} train / {n_val} validation "
            "structures).")
