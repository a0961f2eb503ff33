"""The `newsletter` command: a thin shell over the library, and the terminal output of send and stats."""
