"""The serve app as a module-level ASGI callable, for running under any ASGI server:

    uvicorn newsletter.web.asgi:app --proxy-headers --forwarded-allow-ips=127.0.0.1
    hypercorn newsletter.web.asgi:app
    gunicorn -k uvicorn.workers.UvicornWorker newsletter.web.asgi:app

The configuration is read as the CLI reads it: $NEWSLETTER_CONFIG, else ./newsletter.toml,
then the NEWSLETTER_* environment variables (docs/deploy.md).  Importing this module opens
the database (and brings its schema up to date), once per server process.
"""

from __future__ import annotations

from newsletter.config import load_settings
from newsletter.store import Store
from newsletter.web.app import create_app
from newsletter.web.context import WebContext

settings = load_settings()
app = create_app(WebContext.create(settings, Store.open(settings.database_url)))
