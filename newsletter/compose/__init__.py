"""Composing an issue: Markdown file -> `Issue` -> `Rendered` (email HTML and text with slots, web page), checked."""
