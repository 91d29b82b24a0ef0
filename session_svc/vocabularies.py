"""Users' custom vocabularies: `dragoman.v1.VocabularyService` and its table.

A vocabulary belongs to the user who created it; every call acts on the caller's
own (another user's id gives NOT_FOUND, as an unknown one does). The entries are
checked here against the limits in settings.session (count and length, with the
field named) and stored as one JSON document in `vocabularies`, a session_svc
table (dragoman.db.migrate.TABLE_OWNERS). Sessions read them through `lexicon_of`
when a participant creates or joins (session_svc.lexicon).
"""

from __future__ import annotations

import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from psycopg.types.json import Jsonb

from dragoman import db, languages
from dragoman.config import SessionSettings
from dragoman.db import Database
from dragoman.db.times import timestamp, to_datetime
from dragoman.errors import InvalidArgument, NotFound, ResourceExhausted, shown
from dragoman.v1 import vocabulary_pb2 as vpb
from dragoman.v1 import vocabulary_pb2_grpc as vpb_grpc
from session_svc.identity import Callers
from session_svc.lexicon import FixedTranslation, Lexicon


@dataclass(frozen=True, slots=True)
class VocabularyRecord:
    vocabulary_id: str
    display_name: str
    lexicon: Lexicon
    created_at: datetime
    updated_at: datetime


def _text(field: str, value: str, max_chars: int) -> str:
    """`value` stripped; INVALID_ARGUMENT naming `field` when empty, too long or not text."""
    text = value.strip()
    if not text:
        raise InvalidArgument(f"{field} is empty")
    if len(text) > max_chars:
        raise InvalidArgument(
            f"{field} has {len(text)} characters; the limit is {max_chars}")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise InvalidArgument(f"{field} {shown(text)} contains a control character")
    return text


def _words(field: str, values: list[str], max_chars: int) -> tuple[str, ...]:
    """Each word checked, repeats (any capitalisation) dropped."""
    out: dict[str, str] = {}
    for i, value in enumerate(values):
        word = _text(f"{field}[{i}]", value, max_chars)
        out.setdefault(word.casefold(), word)
    return tuple(out.values())


def check(vocabulary: vpb.Vocabulary, settings: SessionSettings) -> tuple[str, Lexicon]:
    """The name and entries of a vocabulary a client sent, or INVALID_ARGUMENT naming the
    first field that is wrong."""
    chars = settings.max_vocabulary_term_chars
    count = len(vocabulary.terms) + len(vocabulary.translations) + len(vocabulary.do_not_translate)
    if count > settings.max_vocabulary_entries:
        raise InvalidArgument(
            f"vocabulary has {count} entries (terms, translations and do_not_translate "
            f"together); the limit is {settings.max_vocabulary_entries}")
    name = _text("vocabulary.display_name", vocabulary.display_name, chars)
    terms = _words("vocabulary.terms", list(vocabulary.terms), chars)
    keep = _words("vocabulary.do_not_translate", list(vocabulary.do_not_translate), chars)
    translations: dict[tuple[str, str, str], FixedTranslation] = {}
    for i, t in enumerate(vocabulary.translations):
        at = f"vocabulary.translations[{i}]"
        source_language = languages.normalise(t.source_language_code, f"{at}.source_language_code")
        target_language = languages.normalise(t.target_language_code, f"{at}.target_language_code")
        if source_language == target_language:
            raise InvalidArgument(
                f"{at}: source and target language are both {source_language!r}")
        entry = FixedTranslation(source_language, target_language,
                                 _text(f"{at}.source", t.source, chars),
                                 _text(f"{at}.target", t.target, chars))
        key = (source_language, target_language, entry.source)
        if key in translations and translations[key].target != entry.target:
            raise InvalidArgument(
                f"{at}: {shown(entry.source)} already has the translation "
                f"{shown(translations[key].target)} from {source_language} to {target_language}")
        translations[key] = entry
    return name, Lexicon(terms, tuple(translations.values()), keep)


def _document(lexicon: Lexicon) -> Jsonb:
    return Jsonb({
        "terms": list(lexicon.terms),
        "translations": [[t.source_language, t.target_language, t.source, t.target]
                         for t in lexicon.translations],
        "do_not_translate": list(lexicon.do_not_translate),
    })


def _lexicon(document: dict[str, Any]) -> Lexicon:
    return Lexicon(
        terms=tuple(document["terms"]),
        translations=tuple(FixedTranslation(*t) for t in document["translations"]),
        do_not_translate=tuple(document["do_not_translate"]))


def _record(row: tuple[Any, ...]) -> VocabularyRecord:
    vocabulary_id, name, entries, created, updated = row
    return VocabularyRecord(vocabulary_id, name, _lexicon(entries), created, updated)


_COLUMNS = "vocabulary_id, display_name, entries, created_at, updated_at"


class PgVocabularyStore:
    """Vocabularies in PostgreSQL, each statement scoped to the owner."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def create(self, user_id: str, name: str, lexicon: Lexicon, limit: int) -> VocabularyRecord:
        """Adds one, or RESOURCE_EXHAUSTED when the user has `limit` already."""
        now = to_datetime(time.time())
        async with self._db.pool.connection() as conn, conn.transaction():
            # one user's creates in turn, so that two at once cannot pass the count together
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 22))",
                               (f"vocabularies:{user_id}",))
            cur = await conn.execute(
                "SELECT count(*) FROM vocabularies WHERE user_id = %s", (user_id,))
            row = await cur.fetchone()
            if row is not None and row[0] >= limit:
                raise ResourceExhausted(
                    f"you have {row[0]} vocabularies; the limit is {limit}: delete one or "
                    "add these entries to one you have", retry_after_s=0)
            cur = await conn.execute(
                f"INSERT INTO vocabularies (vocabulary_id, user_id, display_name, entries, "
                f"created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (uuid.uuid4().hex, user_id, name, _document(lexicon), now, now))
            created = await cur.fetchone()
            assert created is not None
            return _record(created)

    async def all_of(self, user_id: str) -> list[VocabularyRecord]:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM vocabularies WHERE user_id = %s "
                "ORDER BY created_at, vocabulary_id", (user_id,))
            return [_record(r) for r in await cur.fetchall()]

    async def get(self, user_id: str, vocabulary_id: str) -> VocabularyRecord | None:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM vocabularies WHERE user_id = %s AND vocabulary_id = %s",
                (user_id, vocabulary_id))
            row = await cur.fetchone()
            return _record(row) if row is not None else None

    async def update(self, user_id: str, vocabulary_id: str, name: str,
                     lexicon: Lexicon) -> VocabularyRecord | None:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE vocabularies SET display_name = %s, entries = %s, updated_at = %s "
                f"WHERE user_id = %s AND vocabulary_id = %s RETURNING {_COLUMNS}",
                (name, _document(lexicon), to_datetime(time.time()), user_id, vocabulary_id))
            row = await cur.fetchone()
            return _record(row) if row is not None else None

    async def delete(self, user_id: str, vocabulary_id: str) -> bool:
        async with self._db.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM vocabularies WHERE user_id = %s AND vocabulary_id = %s",
                (user_id, vocabulary_id))
            return cur.rowcount > 0

    async def lexicon_of(self, user_id: str) -> Lexicon:
        """Every vocabulary of the user as one, oldest first."""
        return Lexicon.merged(r.lexicon for r in await self.all_of(user_id))


def vocabulary_proto(record: VocabularyRecord) -> vpb.Vocabulary:
    lexicon = record.lexicon
    return vpb.Vocabulary(
        vocabulary_id=record.vocabulary_id, display_name=record.display_name,
        terms=list(lexicon.terms), do_not_translate=list(lexicon.do_not_translate),
        translations=[vpb.FixedTranslation(
            source_language_code=t.source_language, target_language_code=t.target_language,
            source=t.source, target=t.target) for t in lexicon.translations],
        create_time=timestamp(record.created_at), update_time=timestamp(record.updated_at))


def _missing(vocabulary_id: str) -> NotFound:
    return NotFound(f"vocabulary {shown(vocabulary_id, quote=False)} not found")


def _id(vocabulary_id: str, field: str = "vocabulary_id") -> str:
    if not vocabulary_id:
        raise InvalidArgument(f"{field} is required")
    return vocabulary_id


class VocabularyServicer(vpb_grpc.VocabularyServiceServicer):
    """The caller's vocabularies; anyone else's do not exist for them."""

    def __init__(self, store: PgVocabularyStore, callers: Callers, settings: SessionSettings) -> None:
        self._store = store
        self._callers = callers
        self._settings = settings

    async def CreateVocabulary(
        self, request: vpb.CreateVocabularyRequest, context: grpc.aio.ServicerContext
    ) -> vpb.CreateVocabularyResponse:
        who = self._callers(context)
        name, lexicon = check(request.vocabulary, self._settings)
        created = await self._store.create(
            who.user_id, name, lexicon, self._settings.max_vocabularies)
        return vpb.CreateVocabularyResponse(vocabulary=vocabulary_proto(created))

    async def ListVocabularies(
        self, request: vpb.ListVocabulariesRequest, context: grpc.aio.ServicerContext
    ) -> vpb.ListVocabulariesResponse:
        who = self._callers(context)
        return vpb.ListVocabulariesResponse(
            vocabularies=[vocabulary_proto(r) for r in await self._store.all_of(who.user_id)])

    async def GetVocabulary(
        self, request: vpb.GetVocabularyRequest, context: grpc.aio.ServicerContext
    ) -> vpb.GetVocabularyResponse:
        who = self._callers(context)
        vocabulary_id = _id(request.vocabulary_id)
        with db.unstorable_as(_missing(vocabulary_id)):
            found = await self._store.get(who.user_id, vocabulary_id)
        if found is None:
            raise _missing(vocabulary_id)
        return vpb.GetVocabularyResponse(vocabulary=vocabulary_proto(found))

    async def UpdateVocabulary(
        self, request: vpb.UpdateVocabularyRequest, context: grpc.aio.ServicerContext
    ) -> vpb.UpdateVocabularyResponse:
        who = self._callers(context)
        vocabulary_id = _id(request.vocabulary.vocabulary_id, "vocabulary.vocabulary_id")
        name, lexicon = check(request.vocabulary, self._settings)
        with db.unstorable_as(_missing(vocabulary_id)):
            updated = await self._store.update(who.user_id, vocabulary_id, name, lexicon)
        if updated is None:
            raise _missing(vocabulary_id)
        return vpb.UpdateVocabularyResponse(vocabulary=vocabulary_proto(updated))

    async def DeleteVocabulary(
        self, request: vpb.DeleteVocabularyRequest, context: grpc.aio.ServicerContext
    ) -> vpb.DeleteVocabularyResponse:
        who = self._callers(context)
        vocabulary_id = _id(request.vocabulary_id)
        with db.unstorable_as(_missing(vocabulary_id)):
            deleted = await self._store.delete(who.user_id, vocabulary_id)
        if not deleted:
            raise _missing(vocabulary_id)
        return vpb.DeleteVocabularyResponse()
