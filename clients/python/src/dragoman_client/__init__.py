"""Async Python client of the dragoman speech translation API.

    client = await dragoman_client.connect("127.0.0.1:50051")
    await client.login("ana", "correct horse battery")
    session = await client.create_session("en")        # others join with session.code
    async for event in session.converse(audio.wav_chunks("hello.wav")):
        if isinstance(event, Translation) and event.is_final:
            print(event.text)

The generated messages of the whole API are `auth_pb2`, `sessions_pb2`, `conversation_pb2`,
`vocabulary_pb2` and `recording_pb2` here, and their services' stubs the `*_pb2_grpc` beside
them: for calls this module does not wrap, on `client.channel` with
`metadata=await client.metadata()`.
"""

from dragoman_client import audio
from dragoman_client._gen.dragoman.v1 import (
    auth_pb2,
    conversation_pb2,
    recording_pb2,
    sessions_pb2,
    vocabulary_pb2,
)
from dragoman_client._gen.dragoman.v1 import auth_pb2_grpc as auth_pb2_grpc
from dragoman_client._gen.dragoman.v1 import conversation_pb2_grpc as conversation_pb2_grpc
from dragoman_client._gen.dragoman.v1 import recording_pb2_grpc as recording_pb2_grpc
from dragoman_client._gen.dragoman.v1 import sessions_pb2_grpc as sessions_pb2_grpc
from dragoman_client._gen.dragoman.v1 import vocabulary_pb2_grpc as vocabulary_pb2_grpc
from dragoman_client.client import (
    HISTORY_KEY_BYTES,
    PRIVACY_MODES,
    TRANSCRIPT_FORMATS,
    Client,
    Language,
    Languages,
    Route,
    Session,
    Transcript,
    connect,
    new_history_key,
)
from dragoman_client.errors import (
    AbortedError,
    AlreadyExistsError,
    AuthenticationError,
    DragomanError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnavailableError,
)
from dragoman_client.events import (
    ConversationError,
    Event,
    Other,
    ProcessingEnded,
    ProcessingStarted,
    RecordingChanged,
    RosterChanged,
    SessionEnded,
    SpeechAudio,
    Transcription,
    Translation,
    UtteranceEvent,
)

__version__ = "0.1.0"
__all__ = [
    "HISTORY_KEY_BYTES", "PRIVACY_MODES", "TRANSCRIPT_FORMATS",
    "AbortedError", "AlreadyExistsError", "AuthenticationError", "Client", "ConversationError",
    "DragomanError", "Event", "FailedPreconditionError", "InvalidArgumentError", "Language", "Languages",
    "NotFoundError", "Other", "PermissionDeniedError", "ProcessingEnded", "ProcessingStarted",
    "RecordingChanged", "ResourceExhaustedError", "RosterChanged", "Route", "Session", "SessionEnded",
    "SpeechAudio",
    "TRANSCRIPT_FORMATS", "Transcript", "Transcription", "Translation", "UnavailableError", "UtteranceEvent",
    "audio", "auth_pb2", "auth_pb2_grpc", "connect", "conversation_pb2", "conversation_pb2_grpc",
    "new_history_key", "recording_pb2", "recording_pb2_grpc", "sessions_pb2", "sessions_pb2_grpc",
    "vocabulary_pb2", "vocabulary_pb2_grpc",
]
