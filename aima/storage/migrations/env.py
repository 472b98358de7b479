"""Alembic environment: runs the migrations on the connection that `Database.migrate` hands in.

The connection comes in ``config.attributes["connection"]`` (there is no alembic.ini). Batch mode
(``render_as_batch``) makes later ALTERs portable to SQLite by recreating tables there.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from aima.storage.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through aima.storage.relational.Database.migrate()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
