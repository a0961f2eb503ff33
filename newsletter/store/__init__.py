"""The store: every durable fact (subscribers, lists, later sends and events) in one database.

    from newsletter.store import Store
    with Store.open(settings.database_url) as store:
        with store.begin() as conn:      # write transaction
            ...
        with store.read() as conn:       # read-only snapshot
            ...

Tables are in `newsletter.store.schema`; migrations in `newsletter/store/migrations/`.
"""

from newsletter.store.database import Store, head_revision, open_store
from newsletter.store.dialect import insert_ignoring_conflicts
from newsletter.store.lists import get_or_create_list

__all__ = ["Store", "get_or_create_list", "head_revision", "insert_ignoring_conflicts", "open_store"]
