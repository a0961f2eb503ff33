"""Cells that a spreadsheet would run as formulas, kept as text.

A cell that starts with `=`, `+`, `-` or `@` is a formula to Excel, LibreOffice and Google
Sheets, and tab or carriage return lead to one too (OWASP, "CSV Injection"): a subscriber
who types `=HYPERLINK(...)` as their name must not get a formula into the editor's
spreadsheet.  The export puts a `'` in front of such a cell, which spreadsheets show as
text; the import takes it off again, so export and re-import change nothing.

For that round trip to be exact the export also doubles a leading `'` (a name that really
starts with one), and the import removes one `'` only where the export would have put it:
before one of those characters or before another `'`.  An apostrophe anywhere else, as in
a hand-written `'Tis`, stays.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"
_NEEDS_QUOTE = (*FORMULA_STARTS, _QUOTE)


def neutralise(cell: str) -> str:
    """The cell as the export writes it."""
    return _QUOTE + cell if cell.startswith(_NEEDS_QUOTE) else cell


def restore(cell: str) -> str:
    """The cell as the export was given it: `neutralise` undone."""
    if cell.startswith(_QUOTE) and cell[1:].startswith(_NEEDS_QUOTE):
        return cell[1:]
    return cell
