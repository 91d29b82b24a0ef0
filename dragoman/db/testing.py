"""Scratch schemas for tests and benchmarks: one per run, dropped after.

    with scratch_schema() as database:   # a DbSettings
        settings = dataclasses.replace(config.load(), database=database)

The server is $DRAGOMAN_TEST_DATABASE_URL (default: the local PostgreSQL,
user postgres, database test). Each scratch schema gets its own fresh key.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql

from dragoman.config import DbSettings
from dragoman.db import crypto

DEFAULT_TEST_URL = "postgresql://postgres@127.0.0.1:5432/test"


def test_url() -> str:
    return os.environ.get("DRAGOMAN_TEST_DATABASE_URL", DEFAULT_TEST_URL)


@contextlib.contextmanager
def scratch_schema(url: str = "", prefix: str = "test") -> Iterator[DbSettings]:
    """Database settings for a new empty schema, dropped with its tables afterwards."""
    url = url or test_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    schema = sql.Identifier(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    try:
        yield DbSettings(url=url, schema=name,
                         encryption_keys=crypto.new_key_entry("test1"), pool_max_size=4)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
