"""The web side: `newsletter serve` (app.py) and `newsletter preview` (preview.py)."""
