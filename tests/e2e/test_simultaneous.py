"""Simultaneous mode on the real engines (Whisper, Bergamot, Kokoro): a long English turn,
spoken at real-time pace, reaches a Portuguese listener in pieces before each utterance's
final, and the pieces together speak (nearly) every word of it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dragoman.v1 import conversation_pb2 as pb
from gateway import server as gateway_server
from session_svc import server as session_server
from tests.conftest import TESTDATA
from tests.mesh import MeshAddresses, one_way

CLIP = TESTDATA / "speech" / "generated" / "gen-en-000"
RECALL = 0.8
"""Share of the reference words that the spoken pieces' source_text must hold (Whisper errs)."""


@pytest.fixture(scope="module")
async def simultaneous(mesh: MeshAddresses) -> AsyncIterator[MeshAddresses]:
    """A session_svc in simultaneous mode and a gateway in front of it, on the mesh's models."""
    # a loaded CPU may trail real time by more than the default wait for a leaver's last words
    settings = dataclasses.replace(mesh.settings, session=dataclasses.replace(
        mesh.settings.session, mode="simultaneous", downstream_timeout_s=150.0))
    session = await session_server.create(settings)
    gateway = None
    try:
        port = await session.start("127.0.0.1:0")
        full = dataclasses.replace(settings, addresses=dataclasses.replace(
            settings.addresses, session=f"127.0.0.1:{port}"))
        gateway = await gateway_server.create(full)
        gateway_port = await gateway.start("127.0.0.1:0")
        yield dataclasses.replace(mesh, settings=full, gateway=f"127.0.0.1:{gateway_port}")
    finally:
        if gateway is not None:
            await gateway.stop(1.0)
        await session.stop(1.0)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


async def test_a_long_turn_is_heard_in_pieces_before_each_final(simultaneous: MeshAddresses) -> None:
    talk = await one_way(simultaneous, Path(f"{CLIP}.ogg"), "en", "pt-BR", speed=1.0)
    events = [e for e in talk.listener_events if e.WhichOneof("kind") != "heartbeat"]
    audio = [e.speech_audio for e in events if e.WhichOneof("kind") == "speech_audio"]
    pieced = {a.utterance_id for a in audio if a.piece_index > 0}
    assert pieced, "no utterance was spoken in pieces"
    for utterance_id in pieced:
        kinds = [(e.WhichOneof("kind"), e) for e in events]
        final_at = next(i for i, (k, e) in enumerate(kinds) if k == "transcription" and
                        e.transcription.is_final and e.transcription.utterance_id == utterance_id)
        first_piece = next(i for i, (k, e) in enumerate(kinds) if k == "speech_audio" and
                           e.speech_audio.utterance_id == utterance_id)
        assert first_piece < final_at, utterance_id
        mine = [a for a in audio if a.utterance_id == utterance_id]
        assert [a.chunk_index for a in mine] == list(range(len(mine))) and mine[-1].is_last
        assert [a.is_last for a in mine].count(True) == 1
    spoken = _words(" ".join(a.source_text for a in audio))
    reference = _words(Path(f"{CLIP}.txt").read_text())
    missing = list(reference)
    for word in spoken:
        if word in missing:
            missing.remove(word)
    assert 1 - len(missing) / len(reference) >= RECALL, (spoken, missing)
    assert len(spoken) <= len(reference) * 1.2  # nothing spoken twice
    finals = [e.translation for e in events
              if e.WhichOneof("kind") == "translation" and e.translation.is_final]
    assert finals and all(t.stability == 1.0 and t.target_language_code == "pt-BR" for t in finals)
    partials = [e.translation for e in events
                if e.WhichOneof("kind") == "translation" and not e.translation.is_final]
    assert partials and all(0 < t.stability < 1 for t in partials)
    assert all(e.processing_ended.speaker == pb.SPEAKER_PARTNER for e in events
               if e.WhichOneof("kind") == "processing_ended")
    await talk.speaker.end_session(talk.session_id)
