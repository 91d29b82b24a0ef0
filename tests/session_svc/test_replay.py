"""What a broken recognition stream sends again to its replacement, and how the
replacement's responses are mapped (session_svc.downstream.Replay; the whole
path with a real stt_svc restart is in test_downstream_faults)."""

from __future__ import annotations

from dragoman import rpc
from dragoman.stt.v1 import stt_pb2
from session_svc.downstream import QUIET_KEEP_S, Replay

RATE_HZ = 16_000
CHUNK = bytes(2 * RATE_HZ // 10)  # 100 ms


def event(kind: stt_pb2.SpeechEventType.ValueType, index: int, seconds: float
          ) -> stt_pb2.StreamingRecognizeResponse:
    ev = stt_pb2.SpeechEvent(type=kind, utterance_index=index)
    ev.audio_offset.FromNanoseconds(round(seconds * 1e9))
    return stt_pb2.StreamingRecognizeResponse(speech_event=ev)


def final(index: int) -> stt_pb2.StreamingRecognizeResponse:
    return stt_pb2.StreamingRecognizeResponse(result=stt_pb2.RecognitionResult(
        utterance_index=index, transcript="x", is_final=True))


def started() -> tuple[Replay, rpc.Feed[stt_pb2.StreamingRecognizeRequest], list[object]]:
    feed: rpc.Feed[stt_pb2.StreamingRecognizeRequest] = rpc.Feed(100)
    feed.put(stt_pb2.StreamingRecognizeRequest(config=stt_pb2.StreamingRecognitionConfig(
        encoding=stt_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=RATE_HZ)))
    replay, sent = Replay(feed), list[object]()
    replay.stream().bind(sent.append, lambda: None)
    return replay, feed, sent


def say(feed: rpc.Feed[stt_pb2.StreamingRecognizeRequest], seconds: float) -> None:
    for _ in range(round(seconds * 10)):
        feed.put(stt_pb2.StreamingRecognizeRequest(audio=CHUNK))


def test_a_new_stream_gets_the_audio_after_the_last_utterance_done_with() -> None:
    replay, feed, sent = started()
    say(feed, 3.0)
    assert len(sent) == 31  # config and audio went straight on
    replay.take(event(stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED, 0, 0.5))
    replay.take(event(stt_pb2.SPEECH_EVENT_TYPE_END_OF_SPEECH, 0, 1.5))
    replay.take(final(0))
    replay.take(event(stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED, 1, 2.0))  # cut off
    assert replay.possible()
    replay.restart()
    head = replay.stream()._head
    assert head[0].HasField("config") and len(head) == 1 + 15  # from 1.5 s to 3 s
    # the new stream's first utterance is the one cut off; offsets from the first stream's start
    mapped = replay.take(event(stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED, 0, 0.5))
    assert mapped.speech_event.utterance_index == 1
    assert mapped.speech_event.audio_offset.ToMilliseconds() == 2000
    assert replay.take(final(0)).result.utterance_index == 1


def test_quiet_audio_is_kept_only_briefly() -> None:
    replay, feed, _ = started()
    say(feed, 60.0)  # nobody spoke: memory stays bounded
    replay.restart()
    assert len(replay.stream()._head) - 1 <= 2 * QUIET_KEEP_S * 10
    assert replay.possible()


def test_an_utterance_longer_than_what_is_kept_cannot_be_replayed() -> None:
    replay, feed, _ = started()
    replay.take(event(stt_pb2.SPEECH_EVENT_TYPE_SPEECH_STARTED, 0, 0.0))
    say(feed, 40.0)
    assert not replay.possible()
    replay.take(final(0))  # once it is final, the next one can be
    assert replay.possible()
