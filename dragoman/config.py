"""Settings: one typed object, from defaults, a TOML file and DRAGOMAN_* env vars.

Precedence, lowest first: the defaults below, the TOML file named by
DRAGOMAN_CONFIG (sections `[stt]`, `[mt]`, ...; top-level keys for the
general settings), then environment variables. An environment variable is
`DRAGOMAN_<SECTION>_<FIELD>` for section fields (e.g. DRAGOMAN_STT_BEAM_SIZE)
and `DRAGOMAN_<FIELD>` for general ones (e.g. DRAGOMAN_MODELS_DIR).
Every field is documented where it is declared.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dragoman.errors import InvalidArgument


def cache_dir() -> Path:
    """Where dragoman keeps models and the embedded database: $XDG_CACHE_HOME/dragoman."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dragoman"


def _default_models_dir() -> str:
    return str(cache_dir() / "models")


DEFAULT_TRUNK_LINGER_MS = 10.0
"""`trunk_linger_ms`'s default (mux.LINGER_S; measurements: bench/results/trunk_linger.md)."""
MAX_TRUNK_LINGER_MS = 100.0
"""Longest linger a trunk takes: one chunk period, beyond which an audio frame
would wait for the next chunk of its own call."""


def check_trunk_linger_ms(ms: float, what: str = "setting trunk_linger_ms") -> float:
    """`ms` if a trunk may linger that long, else InvalidArgument naming `what`."""
    if not 0.0 <= ms <= MAX_TRUNK_LINGER_MS:  # NaN too
        raise InvalidArgument(f"{what} must be 0 to {MAX_TRUNK_LINGER_MS:g} ms, got {ms:g}")
    return ms


@dataclass(frozen=True, slots=True)
class Addresses:
    """host:port of each service; clients and `dragoman up` read the same values."""

    gateway: str = "127.0.0.1:50051"
    session: str = "127.0.0.1:50052"
    stt: str = "127.0.0.1:50053"
    mt: str = "127.0.0.1:50054"
    tts: str = "127.0.0.1:50055"


@dataclass(frozen=True, slots=True)
class MetricsAddresses:
    """host:port where each service serves Prometheus /metrics; empty: none.

    In a cluster every pod sets its own (e.g. DRAGOMAN_METRICS_SESSION=0.0.0.0:9100).
    """

    gateway: str = ""
    session: str = ""
    stt: str = ""
    mt: str = ""
    tts: str = ""


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """OpenTelemetry traces of every gRPC call, exported over OTLP/gRPC."""

    otlp_endpoint: str = ""
    """Collector (e.g. http://jaeger:4317); empty: no tracing."""
    insecure: bool = True
    """Plain-text gRPC to the collector (inside the cluster); false for TLS."""
    sample_ratio: float = 1.0
    """Share of new traces kept (calls inside a sampled trace always are)."""


@dataclass(frozen=True, slots=True)
class SttSettings:
    """Speech recognition (stt_svc)."""

    engine: str = "whisper"
    """`whisper` (faster-whisper in process) or `fake` (plumbing tests only)."""
    model: str = "auto"
    """Model for every language, or "auto": per language the strongest installed model that
    runs on `device` within the latency budget (catalogue rank; `dragoman languages` shows it)."""
    english_model: str = ""
    """Model for English when installed ("" follows `model`, "auto" chooses as `model` does).
    Streamed, whisper-base halves whisper-tiny.en's English WER (7.8 vs 14.6 % on FLEURS) for
    about 100 ms more from end of speech to first audio (bench/results/stt_english.md)."""
    beam_size: int = 1
    """Beam width; 1 (greedy) keeps the end-of-speech to final time low."""
    final_beam_when_idle: bool = False
    """Decode a final with beam 5 when no other stream's decode waits for its model, greedily
    (`beam_size`) otherwise. WER de -5, pt -4 points, but x1.36 a final's decode on CPU, and
    end of speech -> final p50 doubled for a stream alone: off until the hardware has room
    (a GPU; bench/results/stt_final_beam.md)."""
    final_beam_when_doubtful: float = 0.0
    """Decode a greedy final again with beam 5 when its `confidence` (as on the result: mean
    word probability x (1 - no-speech probability)) is under this, and keep the reading with
    the higher mean token log-probability; 0 turns it off. At 0.7 (40 % of finals, 57 % of
    their errors): WER pt -2.8, fr -1.2, de and es 0 points, but end of speech -> final p50
    x2.3 with four streams on 2 CPU cores: off (bench/results/stt_final_doubt.md)."""
    redecode_gaps: bool = True
    """Decode again, alone, a second or more of speech a final's words leave out, and splice
    the words in: a final decode can end early after its forced prefix, and its last words
    then vanish (fleurs-pt-000 at -12 dB: 6 words, bench/results/stt_levels.md). Such speech
    is counted and logged either way."""
    redecode_sparse: bool = True
    """Decode again, alone and with no forced prefix, a final of 3 s or more of speech with
    under one word a second (a third of conversational speech's rate): the decode after a
    forced prefix ended early. The new reading replaces it only with twice the words."""
    final_context_s: float = 2.0
    """A final decodes its utterance's audio only from about this many seconds before its
    last stable word ends, with the stable words there forced as context; the older stable
    words stay as the partials read and timed them. Every forced token costs the decoder a
    step, as a generated one does: end of speech -> final p50 60-230 ms lower, WER the same
    (bench/results/stt_final_context.md). 0: every final decodes all of its audio."""
    cpu_threads: int = 2
    """Threads CTranslate2 uses per decode."""
    device: str = "cpu"
    """cpu, cuda or cuda:N: where the Whisper models run (float16 on a GPU, int8 on the CPU)."""
    endpoint_silence_ms: int = 300
    """Default trailing silence that ends an utterance."""
    partial_interval_ms: int = 600
    """How often an utterance in progress is decoded for partial results."""
    early_partial_interval_ms: int = 400
    """The same for streams that ask for early partials (simultaneous mode): 400 ms took the
    ear-voice span 0.3 s lower than 600, and 300 no lower (bench/results/simultaneous.md)."""
    max_utterance_s: float = 8.0
    """An utterance is cut at its latest pause once it grows this long, and finalised (a pause
    after the audio of the words its partial results made stable: it may wait up to 2 s more for
    one, then cuts where it is). A pause the speaker is in is a cut point once speech resumes; if
    it lasts to the endpoint, the utterance just ends there.
    Up to 8 s, Whisper's encoder window is 10 s; longer utterances take a 20 s window and
    finals come later (bench/results/settings.md)."""
    max_streams: int = 16
    """Concurrent streams; more get RESOURCE_EXHAUSTED."""
    idle_timeout_s: float = 10.0
    """A stream that sends nothing for this long is closed (partial flushed)."""
    max_chunks_per_s: float = 0.0
    """Audio messages per second a stream may send after its burst; 0: no limit here
    (the gateway limits clients; session_svc forwards what they sent)."""
    burst_chunks: int = 20
    """Audio messages a stream may send at once before `max_chunks_per_s` applies."""
    low_confidence_below: float = 0.6
    """Finals whose confidence (mean word probability x speech probability) is under this are
    flagged low confidence: on FLEURS it keeps correct transcripts above and puts most
    wrong-language decodes below (bench/results/stt_confidence.md)."""

    def __post_init__(self) -> None:
        for name in ("partial_interval_ms", "early_partial_interval_ms"):
            if getattr(self, name) < 100:
                raise InvalidArgument(f"setting stt.{name} must be 100 or more, "
                                      f"got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class MtSettings:
    """Text translation (mt_svc)."""

    engines: str = "bergamot,ct2,apertium"
    """Engines to load, in order of preference: bergamot, ct2 (every pulled CTranslate2
    model: OPUS-MT, M2M-100, MADLAD-400, NLLB-200), apertium, fake."""
    max_segments: int = 64
    """Most segments in one Translate call."""
    max_segment_chars: int = 2000
    """Longest segment accepted."""
    beam_size: int = 2
    """Beam width of the CTranslate2 engines."""
    max_input_tokens: int = 200
    """Longer sentences are cut into pieces before the CTranslate2 engines see them."""
    max_output_tokens: int = 256
    """Decoding length limit of the CTranslate2 engines."""
    max_batch_size: int = 32
    """Most sentences in one CTranslate2 call."""
    compute_type: str = "int8"
    """CTranslate2 compute type (int8 on CPU)."""
    cpu_threads: int = 2
    """Threads per CTranslate2 model."""
    device: str = "cpu"
    """cpu, cuda or cuda:N: where the CTranslate2 models run."""
    cache: str = "memory"
    """Phrase cache: memory (in-process LRU), redis, or off."""
    cache_entries: int = 10_000
    """Entries of the in-process phrase cache."""
    cache_ttl_s: int = 30 * 24 * 3600
    """Lifetime of a Redis phrase-cache entry."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for the phrase cache when cache = redis."""
    cache_prefix: str = "dragoman:mt:"
    """Key prefix of the Redis phrase cache."""
    max_terms: int = 256
    """Most glossary and do-not-translate terms in one request."""
    max_term_chars: int = 200
    """Longest glossary or do-not-translate term."""


@dataclass(frozen=True, slots=True)
class TtsSettings:
    """Speech synthesis (tts_svc)."""

    engines: str = "piper,kokoro"
    """Engines to load, in order of preference per language: piper, kokoro, espeak, coqui,
    triton, fake; espeak-ng is always appended as the fallback that speaks every language."""
    cache: str = "memory"
    """Audio cache of frequent phrases: memory (in-process LRU), redis, or off."""
    cache_entries: int = 256
    """Entries of the in-process audio cache."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for the audio cache when cache = redis."""
    cache_ttl_s: int = 7 * 24 * 3600
    """Lifetime of a Redis audio-cache entry."""
    cache_prefix: str = "dragoman:tts:"
    """Key prefix of the Redis audio cache."""
    max_text_chars: int = 5000
    """Longest text accepted."""
    cpu_threads: int = 2
    """Threads ONNX Runtime uses per synthesis."""
    device: str = "cpu"
    """cpu, cuda or cuda:N: where the ONNX voices (Kokoro, Piper) run (cuda needs onnxruntime-gpu)."""


@dataclass(frozen=True, slots=True)
class TritonSettings:
    """NVIDIA Triton: where the services find it (engine `triton`) and what `dragoman triton` hosts."""

    url: str = "127.0.0.1:8001"
    """host:port of Triton's gRPC endpoint (`dragoman triton` serves HTTP on the port below
    and metrics on the port above, as Triton's 8000/8001/8002)."""
    timeout_s: float = 60.0
    """Deadline of one try of one inference call."""
    retries: int = 2
    """Extra tries of a call while Triton is UNAVAILABLE."""
    backoff_s: float = 0.2
    """Wait before the first retry; doubles on each."""
    ready_timeout_s: float = 60.0
    """How long a service starting with engine `triton` waits for Triton and its models."""
    roles: str = "stt,mt,tts"
    """What `dragoman triton` hosts: any of stt, mt, tts, comma-separated."""
    stub_env: str = ""
    """Python environment of Triton's stubs for `dragoman triton`; empty for
    <models_dir>/../triton-stub-venv (created with pip on first use)."""
    token: str = ""
    """Access token of PyTriton's restricted endpoints (statistics); empty: a random one."""
    tls: bool = False
    """Reach Triton over mutual TLS with the `[tls]` files (Triton started with
    --grpc-use-ssl-mutual and a certificate from the same CA naming the DNS name
    `triton`, e.g. `dragoman keys tls`'s triton.crt); `dragoman triton` serves plain text."""


@dataclass(frozen=True, slots=True)
class OidcProvider:
    """An OpenID Connect provider users may sign in with (docs/accounts.md)."""

    name: str
    """Shown on the sign-in button and passed to StartSignIn, e.g. "Google"."""
    issuer: str
    """Issuer URL; its /.well-known/openid-configuration is read for the rest."""
    client_id: str
    """This deployment's client id at the provider; ID tokens must name it as audience."""
    client_secret: str = ""
    """The client's secret (empty for a public client: PKCE alone). A secret."""
    scope: str = "openid email profile"
    """Scopes asked for; `openid` and `email` are needed."""


def _providers(value: Any, name: str) -> tuple[OidcProvider, ...]:
    """A TOML array of tables, or (from the environment) the same as a JSON array."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"setting {name}: expected a JSON array ({e})") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidArgument(f"setting {name}: expected a list of tables")
    known = {f.name for f in dataclasses.fields(OidcProvider)}
    providers = []
    for entry in value:
        unknown = sorted(set(entry) - known)
        missing = sorted({"name", "issuer", "client_id"} - set(entry))
        if unknown or missing or not all(isinstance(v, str) for v in entry.values()):
            raise InvalidArgument(
                f"setting {name}: each provider needs text name, issuer and client_id "
                f"(missing {missing}, unknown {unknown})")
        providers.append(OidcProvider(**entry))
    if len({p.name for p in providers}) != len(providers):
        raise InvalidArgument(f"setting {name}: provider names must differ")
    return tuple(providers)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Authentication (gateway)."""

    jwt_secret: str = ""
    """HMAC key for access tokens. Empty: a random key per process (dev only)."""
    access_token_ttl_s: int = 900
    """Access token lifetime (15 min)."""
    refresh_token_ttl_s: int = 7 * 24 * 3600
    """Refresh token lifetime (7 days)."""
    identity_key: str = ""
    """HMAC key (32 bytes or more) of the identity assertions the gateway signs for
    session_svc on every call (dragoman.assertion); gateways and session_svc share it.
    A secret: set it from the environment."""
    identity_key_file: str = ""
    """File holding `identity_key`. With neither, every process on the machine shares
    <cache>/dragoman/identity.key, generated on first use (one machine only)."""
    revocation_recheck_ms: int = 1000
    """How long a gateway trusts its cached answer that a login is not revoked. Logouts
    and deletions are seen at once (here, and by other replicas through a PostgreSQL
    NOTIFY); this bounds how late a replica that missed the notification sees them."""
    login_failures_free: int = 5
    """Wrong passwords per (username, client address) before each further attempt
    from that address waits (doubling from 1 s); other addresses are not affected."""
    login_backoff_max_s: float = 900.0
    """Longest wait between attempts from one address after wrong passwords."""
    oidc_providers: tuple[OidcProvider, ...] = ()
    """OpenID Connect providers to sign in with (Google, Apple, Microsoft, Keycloak ...):
    in TOML `[[auth.oidc_providers]]` tables of `name`, `issuer`, `client_id`,
    `client_secret` and optionally `scope`; in DRAGOMAN_AUTH_OIDC_PROVIDERS the same
    as a JSON array. Empty: password sign-in only."""
    oidc_state_ttl_s: int = 600
    """How long a sign-in begun with StartSignIn may take to finish (single use)."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Mutual TLS between dragoman's own processes (docs/tls.md): the gateway's calls to
    session_svc, session_svc's to stt/mt/tts (trunks included) and the services' to Triton.
    Each process proves its role with a certificate from one CA (`dragoman keys tls`);
    session_svc takes identity assertions only from a gateway's. The gateway's public
    port is not affected (Envoy or the ingress terminates clients' TLS)."""

    enabled: bool = False
    """Internal servers take only mutual TLS and internal channels use it; off on one
    machine (`dragoman up`, tests), on in deploy/k8s."""
    ca_file: str = ""
    """PEM of the CA every internal certificate is checked against (peers with any other
    CA's, or none, cannot connect)."""
    cert_file: str = ""
    """PEM certificate of this process, naming its role (`spiffe://dragoman/<role>`)."""
    key_file: str = ""
    """PEM private key of `cert_file`. A secret: mount it from a Kubernetes Secret."""
    health_address: str = ""
    """host:port of a plain-text server of gRPC health only, for probes that cannot
    present a certificate (kubelet's); empty: none."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Sessions and the per-speaker pipeline (session_svc)."""

    code_ttl_s: int = 600
    """How long a pairing code stays valid while the session waits."""
    event_buffer: int = 2048
    """Events kept per participant for resumption after a reconnect."""
    event_buffer_bytes: int = 2 * 2**20
    """Serialized bytes of those events kept per participant; the oldest go first (the
    newest stays, whatever its size). Translated speech is nearly all of it: 2 MiB holds
    about 43 s of 24 kHz PCM speech (bench/results/event_log_bytes.md); 0: no byte bound."""
    heartbeat_interval_s: float = 15.0
    """Server heartbeat period on idle streams."""
    downstream_timeout_s: float = 30.0
    """Deadline of a call to stt/mt/tts for one utterance."""
    abandoned_after_s: float = 300.0
    """An active session with neither participant connected for this long ends (reason
    "abandoned"): sessions clients never ended hold no memory or place under the limit."""
    max_live_sessions: int = 0
    """Most live sessions (waiting or active) this replica holds; CreateSession beyond
    it gets RESOURCE_EXHAUSTED, so the sessions in progress keep their latency. 0: no
    limit. Size it from bench/CAPACITY.md: what one replica carries within the goal."""
    overload_lag_ms: int = 100
    """CreateSession gets RESOURCE_EXHAUSTED while the event loop has run this late for
    a whole second (`dragoman.overload`); 0: never."""
    join_timeout_s: float = 10.0
    """A Converse stream whose `join` has not come this long after it opened ends with
    DEADLINE_EXCEEDED (the gateway and session_svc both hold to it)."""
    max_audio_speed: float = 2.0
    """Seconds of audio a participant may send per second of wall time, after a burst of
    `audio_burst_s`: chunks beyond it get RESOURCE_EXHAUSTED (the gateway's chunk limit
    cannot see how much audio a chunk carries; Opus is counted by its packets' TOC).
    2x lets a client catch up after a stall.
    0: no limit (tests that send recorded speech at full speed)."""
    audio_burst_s: float = 10.0
    """Seconds of audio a participant may send at once beyond real time."""
    sentence_wait_ms: int = 0
    """How long a final transcript that does not end a sentence waits for the speaker to go
    on before it is translated alone; when they do, it is translated with the rest of its
    sentence, as one text (session_svc.sentences). 0: translate every final at once. Off by
    default: with the embedded engines it gained no chrF beyond run-to-run noise and held
    fragments 3-5 s (bench/results/mesh_chrf.md); 1500 suits MT that uses context.
    Ignored in simultaneous mode (`mode`): holding finals would defeat speaking before the end."""
    sentence_max_hold_ms: int = 5000
    """Longest a held fragment waits for its sentence to end, from its final transcript:
    speech that never ends a sentence is still translated every so often."""
    max_participants: int = 8
    """Most participants a session takes, its creator included (2 to 8); a creator may
    ask for fewer (CreateSessionRequest.max_participants)."""
    same_language_audio: bool = False
    """Whether a listener who speaks the speaker's language hears them re-spoken in their
    own voice choice too; off: they get the transcript only."""
    mode: str = "utterance"
    """When a listener hears a speaker: "utterance" speaks each utterance whole once its final
    transcript comes; "simultaneous" speaks a long utterance in clause-sized pieces of its stable
    partial transcript while the speaker goes on (SpeechAudio.piece_index), trailing them by a
    few seconds, as an interpreter does. Short utterances go as in "utterance" mode."""
    partial_translation_interval_ms: int = 1000
    """Translated partials (Translation.is_final false): the stable prefix of a partial
    transcript is translated when it has grown by a word or more, at most this often per
    speaker and language, with at most one pending. 0: captions in the listener's language
    only with the final."""
    piece_min_words: int = 2
    """Simultaneous mode: fewest stable words a piece ending at a clause mark (, ; : . ? !)
    holds."""
    piece_max_words: int = 4
    """Simultaneous mode: stable words that go as a piece with no clause mark among them (a
    speaker who never pauses). 2 and 4 took the PT->EN ear-voice span 0.4-0.7 s below 3 and
    10, within 2.5 chrF; a voice slower than real time keeps up better with longer pieces
    (bench/results/simultaneous.md)."""
    piece_behind_ms: int = 3000
    """Simultaneous mode: while every listener hearing an utterance's pieces is at least this
    far behind (as `catchup_backlog_ms` measures it), a piece with no clause mark waits for up
    to `piece_max_words_behind` words instead of `piece_max_words`: it would wait in their
    outbox anyway, and a longer piece translates better and is fewer syntheses for a voice
    that cannot keep up: EN->PT chrF +2.7, EVS p50 -0.6 to -1.0 s
    (bench/results/simultaneous.md). 0: pieces never grow."""
    piece_max_words_behind: int = 12
    """Simultaneous mode: `piece_max_words` while the listeners are behind (`piece_behind_ms`)."""
    max_vocabularies: int = 20
    """Most custom vocabularies a user keeps (VocabularyService); one more gets
    RESOURCE_EXHAUSTED."""
    max_vocabulary_entries: int = 100
    """Most entries in one vocabulary: terms, fixed translations and do-not-translate
    words together (INVALID_ARGUMENT beyond). Whatever the vocabularies hold, a stream
    gets at most 100 hotwords (500 characters) and a pair 256 glossary entries."""
    max_vocabulary_term_chars: int = 100
    """Longest term, translation, word or vocabulary name, in characters."""
    catchup_backlog_ms: int = 1500
    """Catch-up speaking rate, both modes: when a listener is further behind than this (speech
    sent and not yet played, or the wait of the latest piece from its translation to its
    playing, whichever is more), what is synthesised for them next is spoken faster, the more
    so the further behind, up to `catchup_max_speed` at twice this; at or under it, the
    voice's own rate (session_svc.catchup). 1500 against 4000: EN->PT simultaneous EVS p50
    7.3-7.9 -> 5.9-6.0 s, p90 10.7-11.8 -> 7.4-7.9 s, and whisper-base misses no more of what
    the listener hears (bench/results/simultaneous.md)."""
    catchup_max_speed: float = 1.3
    """Fastest catch-up speaking rate, relative to the voice's own (1 to 2); 1: off. On an
    idle machine 1.3 took EN->PT's listener lag at the end from 26 to 14 s in simultaneous
    mode and from 28 to 23 s in utterance mode, chrF unchanged
    (bench/results/simultaneous.md)."""
    advertise_address: str = ""
    """host:port gateways reach this replica at, recorded with each session it
    holds so that calls about the session are routed here. Set it (to the
    pod's own address) when several replicas run; empty: one replica, reached
    at addresses.session."""
    handover_after_ms: int = 3000
    """With `advertise_address`: a replica whose owner lease has not been renewed for
    this long is taken for dead, and another takes its live sessions over (it renews
    every third of it; docs/handover.md). Shorter is a faster recovery, and a replica
    whose event loop stalls that long loses its sessions to another."""

    def __post_init__(self) -> None:
        for name in ("sentence_wait_ms", "sentence_max_hold_ms", "event_buffer_bytes"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"setting session.{name} must be 0 or more, "
                                      f"got {getattr(self, name)}")
        if self.mode not in ("utterance", "simultaneous"):
            raise InvalidArgument(
                f'setting session.mode must be "utterance" or "simultaneous", got {self.mode!r}')
        if self.partial_translation_interval_ms < 0:
            raise InvalidArgument("setting session.partial_translation_interval_ms must be 0 "
                                  f"or more, got {self.partial_translation_interval_ms}")
        if not 1 <= self.piece_min_words <= self.piece_max_words:
            raise InvalidArgument(
                "settings session.piece_min_words and piece_max_words must satisfy "
                f"1 <= min <= max, got {self.piece_min_words} and {self.piece_max_words}")
        if self.piece_behind_ms < 0:
            raise InvalidArgument(
                f"setting session.piece_behind_ms must be 0 or more, got {self.piece_behind_ms}")
        if self.piece_max_words_behind < self.piece_max_words:
            raise InvalidArgument(
                "setting session.piece_max_words_behind must be at least piece_max_words "
                f"({self.piece_max_words}), got {self.piece_max_words_behind}")
        for name in ("max_vocabularies", "max_vocabulary_entries", "max_vocabulary_term_chars"):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"setting session.{name} must be 1 or more, "
                                      f"got {getattr(self, name)}")
        if self.catchup_backlog_ms <= 0:
            raise InvalidArgument(
                f"setting session.catchup_backlog_ms must be more than 0, got {self.catchup_backlog_ms}")
        if not 1.0 <= self.catchup_max_speed <= 2.0:
            raise InvalidArgument(
                f"setting session.catchup_max_speed must be 1 to 2, got {self.catchup_max_speed}")
        if not 2 <= self.max_participants <= 8:
            raise InvalidArgument("setting session.max_participants must be 2 to 8, "
                                  f"got {self.max_participants}")


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """Recordings of sessions, kept with every participant's consent (docs/recording.md)."""

    retention_days: int = 30
    """How long a recording is kept after it was asked for; then the sweeper deletes it."""
    sweep_interval_s: float = 600.0
    """How often each session_svc replica deletes the expired recordings (expired ones are
    no longer served, even before the sweep)."""
    max_requests_per_session: int = 5
    """RequestRecording calls a session takes in all (RESOURCE_EXHAUSTED beyond): asking
    everyone to consent again and again would flood them with questions."""
    speech_bitrate_bps: int = 24000
    """Opus bitrate of the kept speech (translated and original voices)."""

    def __post_init__(self) -> None:
        if self.retention_days < 1:
            raise InvalidArgument(
                f"setting recording.retention_days must be 1 or more, got {self.retention_days}")
        if self.sweep_interval_s <= 0:
            raise InvalidArgument("setting recording.sweep_interval_s must be more than 0, "
                                  f"got {self.sweep_interval_s}")
        if self.max_requests_per_session < 1:
            raise InvalidArgument("setting recording.max_requests_per_session must be 1 or more, "
                                  f"got {self.max_requests_per_session}")
        if not 6000 <= self.speech_bitrate_bps <= 510000:
            raise InvalidArgument("setting recording.speech_bitrate_bps must be 6000 to 510000 "
                                  f"(Opus), got {self.speech_bitrate_bps}")


@dataclass(frozen=True, slots=True)
class DbSettings:
    """PostgreSQL: accounts, sessions, translation logs (gateway and session_svc)."""

    url: str = ""
    """libpq URL of an external PostgreSQL (DRAGOMAN_DATABASE_URL). Empty: an
    embedded PostgreSQL (pgserver) in `embedded_dir`, started on demand."""
    schema: str = ""
    """Schema the tables live in (created if missing); empty for `public`."""
    embedded_dir: str = ""
    """Data directory of the embedded server; empty for <cache>/dragoman/pgdata."""
    encryption_keys: str = ""
    """Keys for text at rest, `id:base64-32-bytes` separated by commas; the
    first encrypts, all decrypt. A secret: set it from the environment."""
    encryption_keys_file: str = ""
    """File with one `id:base64-32-bytes` key per line, first one encrypts.
    With neither setting, the embedded default generates <cache>/dragoman/encryption.keys."""
    pool_max_size: int = 10
    """Most connections per process."""
    migrate_on_start: bool = True
    """Services apply pending migrations when they start (else: `dragoman db upgrade`)."""


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Rate limits (gateway). RESOURCE_EXHAUSTED with `retry-after` beyond them."""

    requests_per_minute: int = 100
    """Calls per user per minute (SendAudio excepted: it has the audio limit)."""
    sessions_per_hour: int = 5
    """CreateSession calls per user per hour."""
    audio_chunks_per_s: float = 10.0
    """Audio chunks per stream per second."""
    audio_burst_chunks: int = 10
    """Chunks a stream may send at once beyond the steady rate."""
    registrations_per_hour: int = 10
    """Register calls per client address per hour (a burst of as many)."""
    trusted_proxies: str = ""
    """Comma-separated addresses or networks (CIDR) of proxies in front of the gateway
    (Envoy): for calls from them the client address is the last x-forwarded-for entry;
    empty: the peer address of the call."""
    failed_joins: int = 5
    """JoinSession calls that find no session (NOT_FOUND) a user may make at once;
    then one per `failed_join_interval_s`. Each try refused meanwhile doubles the
    wait (up to a day), so guessing codes does not pay (docs/security.md)."""
    failed_join_interval_s: float = 1800.0
    """Steady interval between failed joins of a user beyond `failed_joins`."""
    failed_joins_per_address: int = 20
    """As `failed_joins`, per client address (many users may share one: a NAT)."""
    failed_join_per_address_interval_s: float = 300.0
    """Steady interval between failed joins from one address beyond `failed_joins_per_address`."""
    redis_url: str = ""
    """redis:// URL so limits hold across gateway replicas; empty: in process."""


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """The operators' API (dragoman.admin.v1, docs/admin.md)."""

    enabled: bool = False
    """The gateway serves AdminService (to accounts with the admin role only);
    false: it does not exist there (UNIMPLEMENTED)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, grouped by service."""

    models_dir: str = field(default_factory=_default_models_dir)
    """Where `dragoman models install` puts weights and services read them."""
    hub_url: str = ""
    """Model hub for `dragoman models pull` (default https://huggingface.co)."""
    grace_period_s: float = 10.0
    """On SIGTERM, how long in-flight calls get to finish."""
    trunk: bool = True
    """Internal calls (the gateway's to session_svc, session_svc's to
    stt/mt/tts) travel as frames on one gRPC stream per pair of processes
    (dragoman.mux); false: a gRPC call per call. Servers accept both."""
    trunk_linger_ms: float = DEFAULT_TRUNK_LINGER_MS
    """How long a caller's trunk holds an audio frame for others to share its
    gRPC message (0 to 100; frames someone waits on never wait): longer
    spends less CPU per session and adds up to that much latency per hop
    (mux.LINGER_S; bench/results/trunk_linger.md)."""
    event_loop: str = "uvloop"
    """The services' asyncio event loop: "uvloop" (libuv; less CPU and a shorter
    tail under load, bench/results/settings.md) or "asyncio" (the standard library's)."""
    reflection: bool = False
    """Every service serves gRPC reflection (for grpcurl and the like): on in
    development only, since on the gateway's public port it hands anyone the
    whole API, internal services' included when they are reachable."""
    addresses: Addresses = field(default_factory=Addresses)
    metrics: MetricsAddresses = field(default_factory=MetricsAddresses)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    mt: MtSettings = field(default_factory=MtSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    session: SessionSettings = field(default_factory=SessionSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    database: DbSettings = field(default_factory=DbSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    triton: TritonSettings = field(default_factory=TritonSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)

    def __post_init__(self) -> None:
        check_trunk_linger_ms(self.trunk_linger_ms)


def _coerce(value: Any, kind: Any, name: str) -> Any:
    if kind == tuple[OidcProvider, ...]:
        return _providers(value, name)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise InvalidArgument(f"setting {name}: expected a boolean, got {value!r}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"setting {name}: expected {kind.__name__}, got {value!r}"
        ) from None


def _build(cls: type, table: dict[str, Any], env: dict[str, str], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
    for key in table:
        if key not in known:
            raise InvalidArgument(f"unknown setting {prefix.lower()}{key}")
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            sub = table.get(f.name, {})
            if not isinstance(sub, dict):
                raise InvalidArgument(f"setting [{f.name}] must be a table")
            kwargs[f.name] = _build(kind, sub, env, f"{prefix}{f.name.upper()}_")
            continue
        env_name = f"DRAGOMAN_{prefix}{f.name.upper()}"
        if env_name in env:
            kwargs[f.name] = _coerce(env[env_name], kind, env_name)
        elif f.name in table:
            kwargs[f.name] = _coerce(table[f.name], kind, f"{prefix.lower()}{f.name}")
    return cls(**kwargs)


def env_names(cls: type = Settings, prefix: str = "") -> set[str]:
    """Every DRAGOMAN_* variable the settings read (besides DRAGOMAN_CONFIG and
    DRAGOMAN_LOG_LEVEL, read before them)."""
    hints = typing.get_type_hints(cls)
    names: set[str] = set()
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            names |= env_names(kind, f"{prefix}{f.name.upper()}_")
        else:
            names.add(f"DRAGOMAN_{prefix}{f.name.upper()}")
    return names


def load(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Reads the settings. `path` defaults to $DRAGOMAN_CONFIG when set."""
    env = dict(os.environ if env is None else env)
    path = path or env.get("DRAGOMAN_CONFIG")
    table: dict[str, Any] = {}
    if path:
        try:
            table = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise InvalidArgument(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise InvalidArgument(f"config file {path}: {e}") from None
    return _build(Settings, table, env, "")


def describe(settings: Settings) -> dict[str, Any]:
    """Settings as a plain dict (secrets masked), for `dragoman config`."""
    out = dataclasses.asdict(settings)
    for section, key in (("auth", "jwt_secret"), ("auth", "identity_key"), ("triton", "token"),
                         ("database", "url"), ("database", "encryption_keys"),
                         ("limits", "redis_url"), ("mt", "redis_url"), ("tts", "redis_url")):
        if out[section][key]:
            out[section][key] = "***"
    out["auth"]["oidc_providers"] = [
        {**p, "client_secret": "***" if p["client_secret"] else ""}
        for p in out["auth"]["oidc_providers"]]
    return out

