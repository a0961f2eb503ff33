"""The store: every durable fact (subscribers, lists, later sends and events) in one database.

    from newsletter.store import Store
    with Store.open(settings.database_url) as store:
        with store.begin() as conn:      # write transaction
            ...
        with store.read() as conn:       # read-only snapshot
            ...

Tables are in `newsletter.store.schema`; migrations in `newsletter/store/migrations/`.
"""

from newsletter.store.database import Store, head_revision

__all__ = ["Store", "head_revision"]
