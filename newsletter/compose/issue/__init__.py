"""The issue file and its model: `parse.py` reads Markdown into the frozen `Issue` of `model.py`."""
