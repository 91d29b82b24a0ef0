"""Custom vocabularies through the real gateway and session_svc over PostgreSQL:
the API (validation, ownership, limits) and a session that uses them (the speaker's
terms reach stt_svc as hotwords, the pair's fixed translations and the
do-not-translate words reach mt_svc, which honours them)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dragoman import config
from dragoman.v1 import auth_pb2
from dragoman.v1 import vocabulary_pb2 as vpb
from gateway import server
from tests.conftest import started
from tests.gateway.conftest import PASSWORD, one_utterance, unique_name, user
from tests.rawclient import RawClient
from tests.session_svc.stack import Stack, session_stack
from tests.session_svc.test_session_data import code_of as failure

MAX_VOCABULARIES = 2


@pytest.fixture(scope="module")
async def stack(settings: config.Settings) -> AsyncIterator[Stack]:
    tight = dataclasses.replace(
        settings,
        limits=dataclasses.replace(settings.limits, audio_burst_chunks=10_000),
        session=dataclasses.replace(settings.session, max_vocabularies=MAX_VOCABULARIES,
                                    max_vocabulary_entries=4, max_vocabulary_term_chars=20))
    async with session_stack(tight) as running:
        yield running


@pytest.fixture(scope="module")
async def gateway(stack: Stack) -> AsyncIterator[str]:
    async for address in started(await server.create(stack.settings)):
        yield address


def vocabulary(name: str = "work", **entries: object) -> vpb.Vocabulary:
    return vpb.Vocabulary(display_name=name, **entries)  # type: ignore[arg-type]


async def create(client: RawClient, v: vpb.Vocabulary) -> vpb.Vocabulary:
    reply = await client.vocabularies.CreateVocabulary(
        vpb.CreateVocabularyRequest(vocabulary=v), metadata=client.metadata)
    return reply.vocabulary


async def test_create_list_get_update_delete(gateway: str) -> None:
    ana = await user(gateway)
    made = await create(ana, vocabulary(
        " Products ", terms=[" Dragoman ", "dragoman"],
        translations=[vpb.FixedTranslation(source_language_code="en", target_language_code="pt-BR",
                                           source="front desk", target="receção")],
        do_not_translate=["Sintra"]))
    assert made.vocabulary_id and made.create_time.seconds > 0
    assert made.display_name == "Products"
    assert list(made.terms) == ["Dragoman"]  # trimmed, repeats dropped
    assert made.translations[0].target_language_code == "pt"
    m = ana.metadata
    listed = await ana.vocabularies.ListVocabularies(vpb.ListVocabulariesRequest(), metadata=m)
    assert [v.vocabulary_id for v in listed.vocabularies] == [made.vocabulary_id]
    got = await ana.vocabularies.GetVocabulary(
        vpb.GetVocabularyRequest(vocabulary_id=made.vocabulary_id), metadata=m)
    assert got.vocabulary == made

    changed = vocabulary("Renamed", vocabulary_id=made.vocabulary_id, terms=["Piper"])
    updated = (await ana.vocabularies.UpdateVocabulary(
        vpb.UpdateVocabularyRequest(vocabulary=changed), metadata=m)).vocabulary
    assert (updated.display_name, list(updated.terms), list(updated.do_not_translate)) == (
        "Renamed", ["Piper"], [])
    assert updated.create_time == made.create_time
    assert updated.update_time.ToNanoseconds() >= made.update_time.ToNanoseconds()

    await ana.vocabularies.DeleteVocabulary(
        vpb.DeleteVocabularyRequest(vocabulary_id=made.vocabulary_id), metadata=m)
    listed = await ana.vocabularies.ListVocabularies(vpb.ListVocabulariesRequest(), metadata=m)
    assert list(listed.vocabularies) == []
    code, message = await failure(ana.vocabularies.GetVocabulary(
        vpb.GetVocabularyRequest(vocabulary_id=made.vocabulary_id), metadata=m))
    assert (code, message) == (grpc.StatusCode.NOT_FOUND, f"vocabulary {made.vocabulary_id} not found")


async def test_another_users_vocabulary_does_not_exist_for_them(gateway: str, stack: Stack) -> None:
    ana, eve = await user(gateway), await user(gateway)
    mine = await create(ana, vocabulary(terms=["secret"]))
    vid = mine.vocabulary_id
    calls = {
        "get": eve.vocabularies.GetVocabulary(
            vpb.GetVocabularyRequest(vocabulary_id=vid), metadata=eve.metadata),
        "update": eve.vocabularies.UpdateVocabulary(vpb.UpdateVocabularyRequest(
            vocabulary=vocabulary("mine now", vocabulary_id=vid)), metadata=eve.metadata),
        "delete": eve.vocabularies.DeleteVocabulary(
            vpb.DeleteVocabularyRequest(vocabulary_id=vid), metadata=eve.metadata),
    }
    for name, call in calls.items():
        assert await failure(call) == (grpc.StatusCode.NOT_FOUND, f"vocabulary {vid} not found"), name
    listed = await eve.vocabularies.ListVocabularies(vpb.ListVocabulariesRequest(), metadata=eve.metadata)
    assert list(listed.vocabularies) == []
    # untouched, in the database too
    assert stack.query("SELECT display_name FROM vocabularies WHERE vocabulary_id = %s", (vid,)) == [
        ("work",)]
    code, _ = await failure(RawClient(gateway).vocabularies.ListVocabularies(vpb.ListVocabulariesRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(("v", "code", "message"), [
    (vocabulary(""), "INVALID_ARGUMENT", "vocabulary.display_name is empty"),
    (vocabulary("x" * 21), "INVALID_ARGUMENT",
     "vocabulary.display_name has 21 characters; the limit is 20"),
    (vocabulary(terms=["ok", "  "]), "INVALID_ARGUMENT", "vocabulary.terms[1] is empty"),
    (vocabulary(terms=["a\nb"]), "INVALID_ARGUMENT",
     "vocabulary.terms[0] 'a\\nb' contains a control character"),
    (vocabulary(do_not_translate=["y" * 21]), "INVALID_ARGUMENT",
     "vocabulary.do_not_translate[0] has 21 characters; the limit is 20"),
    (vocabulary(terms=["a", "b", "c"], do_not_translate=["d", "e"]), "INVALID_ARGUMENT",
     "vocabulary has 5 entries (terms, translations and do_not_translate together); the limit is 4"),
    (vocabulary(translations=[vpb.FixedTranslation(
        source_language_code="en", target_language_code="xx", source="a", target="b")]),
     "INVALID_ARGUMENT", "vocabulary.translations[0].target_language_code 'xx': language 'xx' is "
     "not supported; supported languages: "),
    (vocabulary(translations=[vpb.FixedTranslation(
        source_language_code="en", target_language_code="en-GB", source="a", target="b")]),
     "INVALID_ARGUMENT", "vocabulary.translations[0]: source and target language are both 'en'"),
    (vocabulary(translations=[vpb.FixedTranslation(
        source_language_code="en", target_language_code="pt", source="a", target="")]),
     "INVALID_ARGUMENT", "vocabulary.translations[0].target is empty"),
    (vocabulary(translations=[
        vpb.FixedTranslation(source_language_code="en", target_language_code="pt", source="a", target="b"),
        vpb.FixedTranslation(source_language_code="en", target_language_code="pt", source="a", target="c"),
    ]), "INVALID_ARGUMENT", "vocabulary.translations[1]: 'a' already has the translation 'b' from en to pt"),
])
async def test_bad_vocabularies_are_refused_naming_the_field(
    gateway: str, v: vpb.Vocabulary, code: str, message: str,
) -> None:
    ana = await user(gateway)
    got_code, got = await failure(create(ana, v))
    assert got_code.name == code
    assert got.startswith(message), got


async def test_bad_ids_and_the_count_limit(gateway: str) -> None:
    ana = await user(gateway)
    m = ana.metadata
    assert await failure(ana.vocabularies.GetVocabulary(vpb.GetVocabularyRequest(), metadata=m)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "vocabulary_id is required")
    assert await failure(ana.vocabularies.UpdateVocabulary(
        vpb.UpdateVocabularyRequest(vocabulary=vocabulary()), metadata=m)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "vocabulary.vocabulary_id is required")
    assert (await failure(ana.vocabularies.DeleteVocabulary(
        vpb.DeleteVocabularyRequest(vocabulary_id="nul\x00id"), metadata=m)))[0] == grpc.StatusCode.NOT_FOUND

    # a flood of creates at once: exactly the limit is kept
    results = await asyncio.gather(*(failure(create(ana, vocabulary(f"v{i}"))) for i in range(6)))
    assert sorted(code.name for code, _ in results).count("OK") == MAX_VOCABULARIES
    refused = [message for code, message in results if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(refused) == 6 - MAX_VOCABULARIES
    assert refused[0] == ("you have 2 vocabularies; the limit is 2: delete one or add these "
                          "entries to one you have")


async def test_a_session_uses_its_participants_vocabularies(
    gateway: str, stack: Stack, fleurs: Path,
) -> None:
    assert stack.stt is not None
    ana, ben = await user(gateway, "en"), await user(gateway, "pt")
    # the fake recogniser says "alpha bravo charlie ..." (stt_svc.engines.fake.SCRIPT)
    await create(ana, vocabulary(terms=["Dragoman"], translations=[vpb.FixedTranslation(
        source_language_code="en", target_language_code="pt", source="alpha", target="ALFA")]))
    await create(ben, vocabulary(do_not_translate=["bravo"], terms=["Lisboa"], translations=[
        vpb.FixedTranslation(source_language_code="en", target_language_code="pt",
                             source="alpha", target="OVERRULED"),
        vpb.FixedTranslation(source_language_code="en", target_language_code="pt",
                             source="charlie", target="CARLOS")]))
    before_stt, before_mt = len(stack.stt.calls), len(stack.mt.calls)
    async with asyncio.timeout(60):
        _, events = await one_utterance(ana, ben, fleurs)

    hotwords = {c.options.hotwords for c in stack.stt.calls[before_stt:]}
    assert hotwords == {("Dragoman",)}  # the speaker's terms only, on every decode
    finals = [e.translation for e in events
              if e.WhichOneof("kind") == "translation" and e.translation.is_final]
    assert finals, [e.WhichOneof("kind") for e in events]
    source, text = finals[0].source_text.lower(), finals[0].text
    assert "alpha" in source and "bravo" in source and "charlie" in source
    # the fake MT tags what it translated; mt_svc put the glossary's terms back untouched
    assert "ALFA" in text and "CARLOS" in text and "bravo" in text
    assert "OVERRULED" not in text
    masked = " ".join(t for batch in stack.mt.calls[before_mt:] for t in batch.texts)
    assert "alpha" not in masked.lower() and "bravo" not in masked.lower()  # the engine never saw them


async def test_the_cli_adds_lists_and_deletes(
    gateway: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from dragoman_tools import cli

    name = unique_name("cli")
    await RawClient(gateway).register(name, f"{name}@example.org", PASSWORD, "en")
    monkeypatch.setenv("DRAGOMAN_PASSWORD", PASSWORD)
    common = ["--username", name, "--gateway", gateway]

    def run(*argv: str) -> tuple[int, str]:
        code = cli.main(["vocabularies", *argv, *common])
        return code, capsys.readouterr().out

    code, out = await asyncio.to_thread(
        run, "add", "Work", "--term", "Siobhan", "--keep", "Dragoman",
        "--translate", "en:pt:front desk=receção")
    assert code == 0
    vid = out.strip()
    code, out = await asyncio.to_thread(run, "list")
    assert (code, out) == (0, f"{vid}\tWork\tSiobhan\ten:pt:front desk=receção\tDragoman\n")
    assert (await asyncio.to_thread(run, "delete", vid))[0] == 0
    assert await asyncio.to_thread(run, "list") == (0, "")
    assert (await asyncio.to_thread(run, "add", "Bad", "--translate", "front desk"))[0] != 0


async def test_export_includes_and_account_deletion_deletes_them(gateway: str, stack: Stack) -> None:
    ana = await user(gateway)
    mine = await create(ana, vocabulary(terms=["Siobhan"]))
    exported = await ana.auth.ExportMyData(auth_pb2.ExportMyDataRequest(), metadata=ana.metadata)
    assert list(exported.vocabularies) == [mine]
    await ana.auth.DeleteAccount(auth_pb2.DeleteAccountRequest(password=PASSWORD), metadata=ana.metadata)
    assert stack.query("SELECT count(*) FROM vocabularies WHERE user_id = %s", (ana.user_id,)) == [(0,)]
