"""Text cells of the CSV files the project writes, kept from being read as formulas by a spreadsheet.

A cell beginning with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return) is a formula to a spreadsheet.
Text cells that begin so are written with a ``'`` in front (what spreadsheets take as "this is text"), and so are
text cells that already begin with ``'``, so reading back strips exactly one and gives every name unchanged.
Only text is escaped: numbers (``-0.5``) are written as numbers.
"""
from __future__ import annotations

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def _text_columns(frame: pd.DataFrame) -> list:
    return [c for c in frame.columns if frame[c].dtype == object or isinstance(frame[c].dtype, pd.StringDtype)]


def _recoded(frame: pd.DataFrame, change) -> pd.DataFrame:
    """``frame`` with each text cell ``v`` for which ``change(v)`` is not None replaced by it (a copy if any is).
    Names repeat down a column, so each distinct value is looked at once."""
    out = frame
    for col in _text_columns(frame):
        new = {v: change(v) for v in pd.unique(frame[col]) if isinstance(v, str)}
        new = {v: w for v, w in new.items() if w is not None}
        if new:
            out = frame.copy() if out is frame else out
            out[col] = frame[col].replace(new)
    return out


def escaped(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each text cell that a spreadsheet would run (or that begins with ``'``) prefixed by ``'``."""
    return _recoded(frame, lambda v: QUOTE + v if v.startswith((*FORMULA_START, QUOTE)) else None)


def unescaped(frame: pd.DataFrame) -> pd.DataFrame:
    """The inverse of :func:`escaped` on a table read back (a cell it did not escape is left as it is)."""
    return _recoded(frame, lambda v: v[1:] if v[:1] == QUOTE and v[1:2] and v[1:2] in (*FORMULA_START, QUOTE)
                    else None)
