"""Alembic environment: Store.open passes its connection; the CLI (-x url=...) makes one;
offline mode (`alembic upgrade head --sql`, or `command.upgrade(..., sql=True)` with the
`dialect` attribute set) writes the migrations as one SQL script."""

import asyncio

from alembic import context

from interchange.store.db import make_engine
from interchange.store.tables import metadata


def run_on(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_url(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(run_on)
    finally:
        await engine.dispose()


def write_sql(dialect: str) -> None:
    context.configure(
        dialect_name=dialect,
        target_metadata=metadata,
        render_as_batch=dialect == "sqlite",
        compare_type=True,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode():
    write_sql(context.config.attributes.get("dialect") or "postgresql")
elif connection is not None:
    run_on(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("alembic: pass the database with -x url=<sqlalchemy url>")
    asyncio.run(run_from_url(url))
