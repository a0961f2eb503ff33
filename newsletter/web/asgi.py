"""The serve app as a module-level ASGI callable, for running under any ASGI server:

    uvicorn newsletter.web.asgi:app --proxy-headers --forwarded-allow-ips=127.0.0.1
    hypercorn newsletter.web.asgi:app
    gunicorn -k uvicorn.workers.UvicornWorker newsletter.web.asgi:app

The configuration is read as the CLI reads it: $NEWSLETTER_CONFIG, else ./newsletter.toml,
then the NEWSLETTER_* environment variables (docs/deploy.md).  Importing this module opens
the database (and brings its schema up to date), once per server process.  A setting the
app refuses (newsletter/web/refusals.py) ends the process with one line, as the CLI does.
"""

from __future__ import annotations

import sys

from newsletter.config import load_settings
from newsletter.errors import NewsletterError
from newsletter.store import Store
from newsletter.web.app import create_app
from newsletter.web.context import WebContext
from newsletter.web.refusals import refuse_unsafe_settings

try:
    settings = load_settings()
    # Before the database is opened: a refused setting should leave nothing behind.
    refuse_unsafe_settings(settings)
    app = create_app(WebContext.create(settings, Store.open(settings.database_url)))
except NewsletterError as err:
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(err.exit_code) from None
