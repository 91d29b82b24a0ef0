"""Speech translation in a session, and what the mesh says it serves, on the embedded default.

The default translates text only en<->pt (Bergamot) and en<->es (Apertium), so a German
speaker reaches an English listener only through Whisper's speech translation, and
nothing goes back from English into German: a one-way session, joined only on request.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from dragoman import audio
from dragoman.v1 import conversation_pb2 as pb
from dragoman.v1 import sessions_pb2 as spb
from tests.mesh import MeshAddresses, new_client, one_way
from tests.rawclient import RawClient, join_request, speak


async def test_languages_are_listed_without_signing_in(mesh: MeshAddresses) -> None:
    async with RawClient(mesh.gateway) as anonymous:
        reply = await anonymous.sessions.ListLanguages(spb.ListLanguagesRequest())
    languages = {lang.language_code: lang for lang in reply.languages}
    assert list(languages)[:3] == ["en", "es", "fr"]
    assert len(languages) == 15
    assert all(lang.recognized and lang.spoken for lang in languages.values())  # Whisper, espeak-ng
    assert {c for c, lang in languages.items() if lang.conversable} == {"en", "es", "pt"}
    routes = {(r.source_language_code, r.target_language_code): r for r in reply.routes}
    assert len(routes) == 15 * 14
    assert (routes["en", "pt"].path, list(routes["en", "pt"].engines)) == (
        pb.TRANSLATION_PATH_CASCADE, ["bergamot"])
    assert (routes["es", "pt"].path, list(routes["es", "pt"].engines)) == (
        pb.TRANSLATION_PATH_PIVOT, ["apertium", "bergamot"])
    assert (routes["de", "en"].path, list(routes["de", "en"].engines)) == (
        pb.TRANSLATION_PATH_SPEECH_TRANSLATION, ["whisper-base:translate"])
    assert (routes["de", "pt"].path, list(routes["de", "pt"].engines)) == (
        pb.TRANSLATION_PATH_SPEECH_TRANSLATION_CASCADE, ["whisper-base:translate", "bergamot"])
    unserved = routes["en", "de"]
    assert not unserved.available and unserved.path == pb.TRANSLATION_PATH_UNSPECIFIED
    assert (list(unserved.missing), unserved.install) == (
        ["no translation from en to de"], "dragoman languages install en de")


async def test_a_pair_served_in_neither_direction_cannot_be_joined(mesh: MeshAddresses) -> None:
    creator = await new_client(mesh.gateway, "de")
    joiner = await new_client(mesh.gateway, "ja")
    session = await creator.create_session("de")
    for allow in (False, True):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await joiner.join_session(session.code, "ja", allow_one_way=allow)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert info.value.details() == (
            "no translation from de to ja: run `dragoman languages install de ja`; "
            "no translation from ja to de: run `dragoman languages install ja de`")
    assert (await joiner.join_session(session.code, "de")).status == spb.SESSION_STATUS_ACTIVE


async def test_one_way_needs_the_joiners_consent(mesh: MeshAddresses) -> None:
    creator = await new_client(mesh.gateway, "de")
    joiner = await new_client(mesh.gateway, "en")
    session = await creator.create_session("de")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await joiner.join_session(session.code, "en")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == (
        "no translation from en to de: run `dragoman languages install en de`; only de -> en is "
        "translated here (speech): set allow_one_way to join a one-way session")
    joined = await joiner.join_session(session.code, "en", allow_one_way=True)
    assert joined.one_way and joined.status == spb.SESSION_STATUS_ACTIVE
    there, back = joined.routes
    assert (there.source_language_code, there.available, there.path) == (
        "de", True, pb.TRANSLATION_PATH_SPEECH_TRANSLATION)
    assert (back.source_language_code, back.available) == ("en", False)


async def test_german_speech_reaches_an_english_listener_by_speech_translation(
    mesh: MeshAddresses, fleurs: Path
) -> None:
    """fleurs-de-000: "für die besten aussichten auf hongkong sollten sie die insel verlassen
    ..."; whisper-base translating said "For the best view of Hong Kong, they should leave
    the island ..." on this machine."""
    talk = await one_way(mesh, fleurs / "fleurs-de-000.ogg", "de", "en", allow_one_way=True)
    for events in (talk.speaker_events, talk.listener_events):
        paired = [e.session_paired for e in events if e.WhichOneof("kind") == "session_paired"]
        assert [p.one_way for p in paired] == [True]  # both are told

    translations = [t for t in talk.heard("translation") if t.is_final]
    assert translations
    for t in translations:
        assert (t.path, t.engine) == (pb.TRANSLATION_PATH_SPEECH_TRANSLATION, "whisper-base:translate")
        assert (t.source_language_code, t.target_language_code) == ("de", "en")
        assert t.text == t.source_text  # Whisper's English: no text translation after it
    heard = set(re.findall(r"[a-z]+", " ".join(t.text for t in translations).lower()))
    assert {"hong", "kong", "island"} <= heard, heard
    assert not heard & {"die", "insel", "sollten", "verlassen"}, heard
    assert talk.heard("speech_audio"), "the English translation is spoken"

    # the speaker's captions are that English text, flagged as such
    own = [e.transcription for e in talk.speaker_events
           if e.WhichOneof("kind") == "transcription" and e.transcription.is_final]
    assert own and all(t.translated_to_english and t.language_code == "de" for t in own)


async def test_speech_before_pairing_switches_to_speech_translation(
    mesh: MeshAddresses, fleurs: Path
) -> None:
    """The creator's recognition stream starts transcribing (no partner yet); once an English
    listener joins, the next audio goes to a stream that translates."""
    speaker = await new_client(mesh.gateway, "de")
    listener = await new_client(mesh.gateway, "en")
    session = await speaker.create_session("de")
    queues: dict[str, asyncio.Queue[pb.ConverseRequest | None]] = {
        "speaker": asyncio.Queue(), "listener": asyncio.Queue()}

    async def stream(name: str) -> AsyncIterator[pb.ConverseRequest]:
        while (item := await queues[name].get()) is not None:
            yield item

    await queues["speaker"].put(join_request(session.session_id))
    speaker_call = speaker.converse(stream("speaker"))
    early = audio.float_to_pcm16(np.zeros(8000, np.float32))
    async for request in speak(early, audio.STT_RATE_HZ, realtime=False):
        await queues["speaker"].put(request)
    await asyncio.sleep(0.5)  # the pipeline (a transcribing stream) is running

    await listener.join_session(session.code, "en", allow_one_way=True)
    await queues["listener"].put(join_request(session.session_id))
    listener_call = listener.converse(stream("listener"))
    samples = audio.decode_file(fleurs / "fleurs-de-001.ogg", audio.STT_RATE_HZ)
    pcm = audio.float_to_pcm16(np.concatenate([samples, np.zeros(24_000, np.float32)]))
    async for request in speak(pcm, audio.STT_RATE_HZ, realtime=False, first_sequence=100):
        await queues["speaker"].put(request)

    translations: list[pb.Translation] = []

    async def first_translation() -> None:
        async for response in listener_call:
            if response.event.WhichOneof("kind") == "translation" and (
                    response.event.translation.is_final):  # not a translated partial
                translations.append(response.event.translation)
                return

    await asyncio.wait_for(first_translation(), timeout=120)
    await queues["speaker"].put(pb.ConverseRequest(leave=pb.LeaveConversation()))
    await queues["speaker"].put(None)
    await queues["listener"].put(None)
    [r async for r in speaker_call]
    listener_call.cancel()
    assert translations[0].path == pb.TRANSLATION_PATH_SPEECH_TRANSLATION
    # fleurs-de-001 begins "er griff auch alles an was ins wasser kam"
    heard = set(re.findall(r"[a-z]+", translations[0].text.lower()))
    assert "water" in heard and not heard & {"wasser", "alles", "auch"}, heard


async def test_german_speech_reaches_a_portuguese_listener_through_english(
    mesh: MeshAddresses, fleurs: Path
) -> None:
    """No de -> pt text route: Whisper translates into English, Bergamot en -> pt after it."""
    talk = await one_way(mesh, fleurs / "fleurs-de-000.ogg", "de", "pt", allow_one_way=True)
    translations = [t for t in talk.heard("translation") if t.is_final]
    assert translations
    for t in translations:
        assert (t.path, t.engine) == (
            pb.TRANSLATION_PATH_SPEECH_TRANSLATION_CASCADE, "whisper-base:translate>bergamot")
        assert (t.source_language_code, t.target_language_code) == ("de", "pt")
        assert t.text
    # a fragment after a cut may come out of Whisper as no English at all ("FUN COV LUM FAREM"
    # for "von Kowloon fahren", depending on where the cut falls), which MT passes through
    assert any(t.text != t.source_text for t in translations)
    english = set(re.findall(r"[a-z]+", " ".join(t.source_text for t in translations).lower()))
    portuguese = " ".join(t.text for t in translations).lower()
    assert {"hong", "kong", "island"} <= english, english
    assert "hong kong" in portuguese and "ilha" in portuguese, portuguese
