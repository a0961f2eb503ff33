"""newsletter: Markdown-first email newsletters."""

__version__ = "0.1.0"
