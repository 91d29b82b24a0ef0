"""The `dragoman` command.

    dragoman models install        fetch and assemble model weights (sha256-checked)
    dragoman languages [install]   the coverage matrix; install language packs
    dragoman up                    run the whole mesh on this machine
    dragoman demo                  a demo conversation of two (or three) through the mesh
    dragoman interpret AUDIO ...   what a partner hears of a recording, translated, through the mesh
    dragoman sessions export ID    a session's transcript (txt, srt, vtt, json) from a gateway
    dragoman vocabularies list|add|delete   your custom vocabularies, through a gateway
    dragoman recordings list|download      recordings of your sessions, through a gateway
    dragoman transcribe AUDIO      speech to text with a running stt service
    dragoman translate ...         text translation with a running mt service
    dragoman synthesize ...        text to speech with a running tts service
    dragoman triton                host the models on PyTriton (engine=triton in the services)
    dragoman config                print the effective settings
    dragoman db upgrade            apply pending database migrations
    dragoman keys generate|rotate  make an encryption key; re-encrypt logs under the first key
    dragoman keys tls --out DIR    a dev CA and a certificate per service for internal mTLS
    dragoman admin create|remove|list  the admin role of accounts, in the database directly

Service addresses come from DRAGOMAN_ADDRESSES_<SERVICE> (or the TOML file in
DRAGOMAN_CONFIG), or the --stt/--mt/--tts/--gateway flags, so the clients
work against a remote deployment as well.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import getpass
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TextIO

import dragoman_client
import grpc
from dragoman_client import vocabulary_pb2 as vpb

from dragoman import audio, config, rpc, tls
from dragoman.errors import DragomanError, InvalidArgument
from dragoman_tools.envoy import add_arguments as envoy_arguments

EXAMPLES = """examples:
  dragoman models install && dragoman demo
  dragoman languages install de ja --device cuda --dry-run
  dragoman up &                      # then, in another shell:
  dragoman transcribe speech.ogg --language en
  dragoman interpret talk.ogg --from pt --to en --speech-out talk-en.wav
  DRAGOMAN_PASSWORD=... dragoman sessions export 1a2b... --format srt --username ana -o talk.srt
  echo "Where is the station?" | dragoman translate --source en --target pt -
  dragoman synthesize --language es "Buenos días" -o hola.wav
"""


def triton_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--triton", action="store_true",
        help="run the models on a Triton server: start `dragoman triton` (needs the triton "
             "extra) and point stt/mt/tts at it (engine triton, triton.url)")


def pack_arguments(parser: argparse.ArgumentParser, *, shared: bool = True) -> None:
    """--device for language packs; and --accept-licence and --hub-url where `models pull`
    does not already add them (`shared`)."""
    parser.add_argument("--device", default=argparse.SUPPRESS, choices=["cpu", "cuda"],
                        help="the device the packs are for: it picks the speech model "
                             "(default: settings stt.device)")
    if shared:
        parser.add_argument("--accept-licence", action="append", default=argparse.SUPPRESS,
                            metavar="NAME", help="accept a licence that needs opt-in, by its name "
                                                 "(e.g. CC-BY-NC-4.0) or the model's; repeatable")
        parser.add_argument("--hub-url", default=argparse.SUPPRESS,
                            help="hub to download from (default: settings hub_url, huggingface.co)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dragoman", description="Real-time two-way speech translation over gRPC.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML settings file (default: $DRAGOMAN_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="install, list and verify model weights")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    inst = msub.add_parser("install", help="download, assemble and verify models (idempotent)")
    inst.add_argument("names", nargs="*", help="models to install (default: all of the embedded default)")
    inst.add_argument("--dir", help="model directory (default: settings models_dir)")
    inst.add_argument("--force", action="store_true", help="reinstall even if installed")
    lst = msub.add_parser("list", help="show the catalogue (speech, translation, voices) and what "
                                       "is installed")
    lst.add_argument("--dir", help="model directory")
    pull = msub.add_parser(
        "pull", help="download a speech model, translation model or voice from its hub and install it")
    pull.add_argument("name", nargs="?", default="",
                      help="catalogue name, e.g. whisper-large-v3, opus-mt-en-de or "
                           "piper-de_DE-thorsten-medium (see `dragoman models list`)")
    pull.add_argument("--language", nargs="+", default=[], metavar="LANG",
                      help="instead of a name: every model these languages need (as `dragoman "
                           "languages install`)")
    pack_arguments(pull, shared=False)
    pull.add_argument("--dry-run", action="store_true", help="with --language: print the plan only")
    pull.add_argument("--dir", help="model directory (default: settings models_dir)")
    pull.add_argument("--force", action="store_true", help="reinstall even if installed")
    pull.add_argument("--accept-licence", metavar="LICENCE", action="append", default=[],
                      help="accept a restrictive licence: its id as `dragoman models list` shows "
                           "it (e.g. CC-BY-NC-4.0) or the model's name; repeatable")
    pull.add_argument("--accept-license", action="store_true", help=argparse.SUPPRESS)
    pull.add_argument("--no-wait", action="store_true",
                      help="fail instead of waiting while another pull of the model runs")
    pull.add_argument("--hub-url", help="hub to download from (default: settings hub_url, huggingface.co)")
    ver = msub.add_parser("verify", help="re-hash installed models against their sha256")
    ver.add_argument("names", nargs="*", help="models to verify (default: all installed)")
    ver.add_argument("--dir", help="model directory")

    langs = sub.add_parser(
        "languages", help="what each language and pair is served by; install language packs",
        description="Without an action: the coverage matrix (speech model and voice per language, "
                    "how each ordered pair is translated).")
    langs.add_argument("--json", action="store_true", help="print the matrix as JSON")
    langs.add_argument("--dir", help="model directory (default: settings models_dir)")
    langs.add_argument("--all", action="store_true",
                       help="with --dry-run: what installing all 15 languages would download")
    langs.add_argument("--dry-run", action="store_true", help="with --all: print the pack plan only")
    pack_arguments(langs)
    lsub = langs.add_subparsers(dest="languages_command", metavar="ACTION")
    linst = lsub.add_parser("install", help="install what the named languages need in every role")
    linst.add_argument("names", nargs="*", metavar="LANG",
                       help="languages, e.g. de ja (see `dragoman languages`)")
    linst.add_argument("--all", action="store_true", help="all 15 languages")
    linst.add_argument("--dry-run", action="store_true",
                       help="print the models, their sizes and licences, and the total; install nothing")
    linst.add_argument("--dir", help="model directory (default: settings models_dir)")
    pack_arguments(linst)

    up = sub.add_parser("up", help="run the whole mesh (one process per service) until Ctrl-C")
    up.add_argument("--log-dir", default="", help="service logs (default: a temporary directory)")
    envoy_arguments(up)  # --envoy: the browser edge (dragoman_tools/envoy.py)
    triton_argument(up)

    demo = sub.add_parser(
        "demo", help="simulated people talk through the mesh",
        description="Simulated people hold a conversation through the public API with real "
                    "recorded speech (FLEURS) at real-time pace: each hears the others translated "
                    "into their own language. Prints transcripts, translations and per-stage "
                    "latency; writes the translated speech each one hears as WAV. Starts the "
                    "mesh unless --gateway is given.")
    demo.add_argument("--participants", type=int, choices=[2, 3], default=2,
                      help="2 (default): Alice (English) and Bruno (--partner-language); 3: Alice "
                           "(English), Bruno (Portuguese) and Carla (Spanish) in one session, each "
                           "hearing the two others, with each listener's latency at the end")
    demo.add_argument("--partner-language", choices=["pt", "es"], default=None,
                      help="language Bruno speaks in a demo of two (Alice speaks English); default pt")
    demo.add_argument("--mode", choices=["utterance", "simultaneous"], default=None,
                      help="when a listener hears a speaker (session.mode of the mesh the demo "
                           "starts; default: the settings', utterance unless set): utterance speaks "
                           "each utterance whole once it is final; simultaneous speaks a long one in "
                           "clause-sized pieces while the speaker goes on, a few seconds behind, as "
                           "an interpreter does (the demo prints each piece heard)")
    demo.add_argument("--out", default="dragoman-demo", help="where to write the WAV files")
    demo.add_argument("--gateway", help="use a running mesh at this address instead of starting one")
    demo.add_argument("--log-dir", default="", help="service logs when the demo starts the mesh")
    envoy_arguments(demo, tls=False)  # --envoy: the demo's calls go through the edge
    triton_argument(demo)

    it = sub.add_parser(
        "interpret", help="translate a recording as a live partner would hear it",
        description="Streams AUDIO through a real session, as a speaker of --from would talk to a "
                    "partner of --to, and prints each final translated utterance on its own line "
                    "(only those go to stdout; progress and transcripts go to stderr). Starts the "
                    "mesh unless --gateway is given.",
        epilog="example: dragoman interpret talk.ogg --from pt --to en --speed 2 > talk-en.txt")
    it.add_argument("audio", metavar="AUDIO", help="audio file (wav, ogg, mp3, flac, ...)")
    it.add_argument("--from", dest="source", required=True, metavar="L",
                    help="BCP-47 language spoken in AUDIO, e.g. pt")
    it.add_argument("--to", dest="target", required=True, metavar="T",
                    help="BCP-47 language to translate into, e.g. en")
    it.add_argument("--speech-out", metavar="F.wav",
                    help="also write the translated speech the partner hears")
    it.add_argument("--speed", type=float, default=1.0,
                    help="send the audio this many times faster than real time, at most the mesh's "
                         "session.max_audio_speed (default 1: real time, as a live speaker)")
    it.add_argument("--gateway", metavar="ADDR",
                    help="use a running mesh at this address instead of starting one")
    it.add_argument("--log-dir", default="", help="service logs when it starts the mesh")

    ses = sub.add_parser("sessions", help="your sessions, through a running gateway")
    ssub = ses.add_subparsers(dest="sessions_command", required=True, metavar="COMMAND")
    exp = ssub.add_parser(
        "export", help="save a session's transcript",
        description="Signs in as --username (password from $DRAGOMAN_PASSWORD, else asked for) "
                    "and saves the transcript of session ID, one you took part in: each "
                    "utterance with its speaker, what was said, its translation into your "
                    "language, and its start and end from the session's start.")
    exp.add_argument("session_id", metavar="ID", help="session id")
    exp.add_argument("--format", choices=list(dragoman_client.TRANSCRIPT_FORMATS), default="txt",
                     help="txt (default), srt (SubRip), vtt (WebVTT) or json")
    exp.add_argument("-o", "--out", metavar="FILE", help="file to write (default: standard output)")
    exp.add_argument("--key-file", metavar="FILE",
                     help="a participant-keyed session: the key you streamed with (32 bytes, raw "
                          "or base64); the sealed transcript is opened with it and written as "
                          "JSON (docs/privacy.md). Without it, the sealed file is written as is")
    exp.add_argument("--username", default=os.environ.get("DRAGOMAN_USERNAME"),
                     help="who to sign in as (default: $DRAGOMAN_USERNAME)")
    exp.add_argument("--gateway", metavar="ADDR",
                     help="gateway address (default: settings addresses.gateway)")

    voc = sub.add_parser(
        "vocabularies", help="your custom vocabularies, through a running gateway (docs/vocabulary.md)")
    vsub = voc.add_subparsers(dest="vocabularies_command", required=True, metavar="COMMAND")
    vlist = vsub.add_parser("list", help="print your vocabularies, one a line")
    vadd = vsub.add_parser("add", help="create a vocabulary; prints its id")
    vadd.add_argument("name", help="its name")
    vadd.add_argument("--term", action="append", default=[], metavar="TERM",
                      help="a name or term to recognise in your speech (repeat)")
    vadd.add_argument("--keep", action="append", default=[], metavar="WORD",
                      help="a word never to translate (repeat)")
    vadd.add_argument("--translate", action="append", default=[], metavar="SRC:TGT:TERM=TRANSLATION",
                      help="a fixed translation, e.g. 'en:pt:front desk=receção' (repeat)")
    vdel = vsub.add_parser("delete", help="delete a vocabulary")
    vdel.add_argument("vocabulary_id", metavar="ID", help="vocabulary id (from list)")
    rec = sub.add_parser(
        "recordings", help="recordings of your sessions, through a running gateway (docs/recording.md)")
    rsub = rec.add_subparsers(dest="recordings_command", required=True, metavar="COMMAND")
    rlist = rsub.add_parser("list", help="print your recordings, one a line")
    rlist.add_argument("--session", default="", metavar="ID", help="only this session's")
    rget = rsub.add_parser(
        "download", help="save a recording: recording.json (texts) and an .ogg per speech",
        description="Writes DIR/recording.json (the recording and each utterance's speaker, "
                    "offsets, transcript and translations) and, per utterance, "
                    "<utterance>-<language>[-<voice>].ogg of the translated speech and "
                    "<utterance>-voice.ogg of the speaker's own voice where they were kept.")
    rget.add_argument("recording_id", metavar="ID", help="recording id (from list)")
    rget.add_argument("-o", "--out", metavar="DIR", default=".", help="directory (default: .)")
    rget.add_argument("--language", action="append", default=[], metavar="CODE",
                      help="only the speech in this language (repeat); default: all kept")
    for parser in (vlist, vadd, vdel, rlist, rget):
        parser.add_argument("--username", default=os.environ.get("DRAGOMAN_USERNAME"),
                            help="who to sign in as (default: $DRAGOMAN_USERNAME; password from "
                                 "$DRAGOMAN_PASSWORD, else asked for)")
        parser.add_argument("--gateway", metavar="ADDR",
                            help="gateway address (default: settings addresses.gateway)")

    tr = sub.add_parser("transcribe", help="print the transcript of an audio file (any common format)")
    tr.add_argument("audio", help="audio file (wav, ogg, mp3, flac, ...)")
    tr.add_argument("--language", default="", help="BCP-47 language; default: detect")
    tr.add_argument("--stt", help="stt service address")
    tr.add_argument("--partials", action="store_true", help="also print partial results (to stderr)")

    tl = sub.add_parser("translate", help="translate text, one line in, one line out")
    tl.add_argument("--source", required=True, help="BCP-47 source language, e.g. en")
    tl.add_argument("--target", required=True, help="BCP-47 target language, e.g. pt")
    tl.add_argument("text", nargs="?", default="-", help="text, or - to read lines from stdin (default)")
    tl.add_argument("--mt", help="mt service address")

    sy = sub.add_parser("synthesize", help="speak text into a WAV file")
    sy.add_argument("text", help="text to speak")
    sy.add_argument("--language", required=True, help="BCP-47 language of the text")
    sy.add_argument("--voice", default="", help="voice name (default: the language's default)")
    sy.add_argument("--rate", type=int, default=0, help="output sample rate (default: the voice's)")
    sy.add_argument("-o", "--output", required=True, help="WAV file to write")
    sy.add_argument("--tts", help="tts service address")

    sub.add_parser("triton", help="host the STT, MT and TTS models on PyTriton until Ctrl-C "
                   "(gRPC on the port of triton.url, DRAGOMAN_TRITON_URL)")
    sub.add_parser("config", help="print the effective settings as JSON")

    dbp = sub.add_parser("db", help="database maintenance")
    dbsub = dbp.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    dbsub.add_parser("upgrade", help="apply pending migrations (safe to run again)")
    keys = sub.add_parser("keys", help="encryption keys of text at rest; certificates of internal mTLS")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    gen = ksub.add_parser(
        "generate", help="print a new `id:base64` key for DRAGOMAN_DATABASE_ENCRYPTION_KEYS")
    gen.add_argument("--id", default="", help="key id (default: random)")
    ksub.add_parser("rotate", help="re-encrypt every translation log under the first configured key")
    ktls = ksub.add_parser(
        "tls", help="write a dev CA and a key and certificate per service for internal mutual TLS",
        description="Writes DIR/ca.crt and ca.key (reused when present), and ROLE.crt and "
                    "ROLE.key for each role. A certificate names its role as the URI SAN "
                    f"{tls.ROLE_URI_PREFIX}ROLE and as its CN; its DNS SANs are the role's "
                    "Kubernetes Service names and localhost, its IP SANs 127.0.0.1 and ::1. "
                    "Point each process's DRAGOMAN_TLS_CA_FILE, _CERT_FILE and _KEY_FILE at "
                    "its files (docs/tls.md).")
    ktls.add_argument("--out", required=True, type=Path, metavar="DIR",
                      help="directory to write into (created if missing)")
    ktls.add_argument("--role", action="append", choices=tls.ROLES, dest="roles",
                      help="a role to issue for; repeatable (default: every role)")
    ktls.add_argument("--namespace", default="default",
                      help="Kubernetes namespace of the Services, for the DNS SANs (default: default)")
    ktls.add_argument("--dns", action="append", default=[], metavar="NAME",
                      help="one more DNS SAN for every certificate; repeatable")
    ktls.add_argument("--days", type=int, default=tls.CERT_DAYS,
                      help=f"certificate lifetime (default: {tls.CERT_DAYS})")

    adm = sub.add_parser(
        "admin", help="the admin role of accounts (in the database directly, never the public API)")
    asub = adm.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    acreate = asub.add_parser("create", help="make the registered account USERNAME an admin")
    acreate.add_argument("username")
    aremove = asub.add_parser("remove", help="take the admin role from USERNAME (not the last admin)")
    aremove.add_argument("username")
    asub.add_parser("list", help="print the admins: username, user id, registration time")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = config.load(args.config)
        if args.command == "triton":  # blocking, and wants the main thread for its signals
            from dragoman_tools.triton import server as triton_server

            triton_server.serve(settings)
            return 0
        return asyncio.run(_dispatch(args, settings))
    except KeyboardInterrupt:
        return 130
    except grpc.aio.AioRpcError as e:
        print(f"dragoman: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except dragoman_client.DragomanError as e:  # a call through the SDK (demo, interpret): "CODE: message"
        print(f"dragoman: {e}", file=sys.stderr)
        return 1
    except (DragomanError, OSError, TimeoutError, RuntimeError) as e:
        print(f"dragoman: error: {e}", file=sys.stderr)
        return 1


async def _dispatch(args: argparse.Namespace, settings: config.Settings) -> int:
    if args.command == "models":
        return _models(args, settings)
    if args.command == "languages":
        return _languages(args, settings)
    if args.command == "up":
        return await _up(args, settings)
    if args.command == "demo":
        return await _demo(args, settings)
    if args.command == "interpret":
        return await _interpret(args, settings)
    if args.command == "sessions":
        return await _export_transcript(args, settings)
    if args.command == "vocabularies":
        return await _vocabularies(args, settings)
    if args.command == "recordings":
        return await _recordings(args, settings)
    if args.command == "transcribe":
        return await _transcribe(args, settings)
    if args.command == "translate":
        return await _translate(args, settings)
    if args.command == "synthesize":
        return await _synthesize(args, settings)
    if args.command == "keys" and args.keys_command == "tls":
        return _tls_keys(args)
    if args.command in ("db", "keys"):
        return await _database(args, settings)
    if args.command == "admin":
        return await _admin(args, settings)
    print(json.dumps(config.describe(settings), indent=2))
    return 0


def _models(args: argparse.Namespace, settings: config.Settings) -> int:
    from dragoman.catalog import catalogue, pulled
    from dragoman_tools import install, pull

    models_dir = Path(args.dir or settings.models_dir)
    if args.models_command == "install":
        install.install(models_dir, args.names, force=args.force)
        return 0
    if args.models_command == "pull" and args.language:
        return _packs(args, settings, args.language)
    if args.models_command == "pull":
        if not args.name:
            raise InvalidArgument("name a model to pull, or --language LANG")
        pull.pull(models_dir, args.name, hub=pull.Hub(args.hub_url or settings.hub_url or None),
                 accept=args.accept_licence, accept_license=args.accept_license, force=args.force,
                 wait=not args.no_wait)
        return 0
    if args.models_command == "verify":
        core = [n for n in args.names if n not in pulled.HUB]
        hub = [n for n in args.names if n in pulled.HUB]
        problems: dict[str, list[str]] = {}
        if core or not args.names:
            problems |= install.verify(models_dir, core)
        if hub or not args.names:
            problems |= pull.verify(models_dir, hub)
        return 1 if any(problems.values()) else 0
    print(catalogue.table(models_dir))
    return 0


def _languages(args: argparse.Namespace, settings: config.Settings) -> int:
    from dragoman_tools import packs

    if args.languages_command == "install":
        return _packs(args, settings, args.names)
    if args.all or args.dry_run:
        if not (args.all and args.dry_run):
            raise InvalidArgument("`dragoman languages --all --dry-run` prints what all 15 packs need; "
                                  "to install, run `dragoman languages install LANG...`")
        return _packs(args, settings, [])
    data = packs.matrix(settings, Path(args.dir or settings.models_dir), getattr(args, "device", ""))
    print(json.dumps(data, indent=2) if args.json else packs.render(data))
    return 0


def _packs(args: argparse.Namespace, settings: config.Settings, names: list[str]) -> int:
    """`dragoman languages install` and `dragoman models pull --language`."""
    from dragoman_tools import packs

    models_dir = Path(getattr(args, "dir", None) or settings.models_dir)
    languages = packs.languages_of(names, every=getattr(args, "all", False))
    accepted = getattr(args, "accept_licence", [])
    found = packs.entries(models_dir)
    plan = packs.plan(languages, getattr(args, "device", settings.stt.device), found, accepted,
                      packs.routed_first(settings, found))
    print(packs.describe(plan))
    if getattr(args, "dry_run", False):
        return 0
    hub_url = getattr(args, "hub_url", None) or settings.hub_url or None
    done = packs.install(plan, models_dir, accepted=accepted, hub_url=hub_url)
    print(f"installed {', '.join(done)}" if done else "nothing to install: every model is there")
    return 0


def _log_dir(arg: str) -> Path:
    return Path(arg) if arg else Path(tempfile.mkdtemp(prefix="dragoman-logs-"))


@contextlib.asynccontextmanager
async def _mesh(
    settings: config.Settings, log_dir: Path, args: argparse.Namespace | None = None,
    out: TextIO | None = None, env: dict[str, str] | None = None,
) -> AsyncIterator[object]:
    """The mesh of `settings`, its services run with `env` on top of this process's."""
    from dragoman.catalog import packaged
    from dragoman_tools.mesh import Mesh

    for name in packaged.CATALOGUE:
        packaged.require(settings.models_dir, name)
    from dragoman import db

    triton = bool(args is not None and getattr(args, "triton", False))
    mesh = Mesh(settings, log_dir, {**os.environ, **await db.prepare(settings.database), **(env or {})},
                triton=triton)
    out = out or sys.stdout  # not a default argument: tests replace sys.stdout
    print(f"starting the mesh (logs in {log_dir}) …", file=out, flush=True)
    t0 = time.monotonic()
    await mesh.start()
    for proc in mesh.processes:
        print(f"  {proc.name:<8} {proc.address}", file=out, flush=True)
    edge = await _edge(args, settings, log_dir, mesh)
    print(f"ready ({time.monotonic() - t0:.1f} s)", file=out, flush=True)
    try:
        yield mesh
    finally:
        if edge is not None:
            await edge.stop()
        await mesh.stop()


async def _edge(args: argparse.Namespace | None, settings: config.Settings, log_dir: Path,
                mesh: Any) -> Any:
    """--envoy: the browser edge in front of the gateway, watched and stopped like a service."""
    if args is None or not getattr(args, "envoy", ""):
        return None
    from dragoman_tools import envoy
    from dragoman_tools.mesh import Process

    try:
        edge = await envoy.start_for_mesh(args, settings.addresses.gateway, log_dir)
    except BaseException:
        await mesh.stop()
        raise
    mesh.processes.append(Process("envoy", edge.address, edge.process, edge.log_path))
    print(f"  {'envoy':<8} {edge.url}  (web client and gRPC-Web; health: {edge.url}/healthz)", flush=True)
    return edge


def _entry_address(mesh: Any, settings: config.Settings) -> str:
    """Where clients of `dragoman demo` connect: the edge with --envoy, else the gateway."""
    return next((p.address for p in mesh.processes if p.name == "envoy"), settings.addresses.gateway)


async def _up(args: argparse.Namespace, settings: config.Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with _mesh(settings, _log_dir(args.log_dir), args) as mesh:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            failed = mesh.failed()  # type: ignore[attr-defined]
            if failed is not None:
                print(f"{failed.name} exited with code {failed.popen.returncode}; "
                      f"see {failed.log_path}", file=sys.stderr)
                return 1
        print("stopping …", flush=True)
    return 0


async def _demo(args: argparse.Namespace, settings: config.Settings) -> int:
    from dragoman_tools import demo

    if args.participants != 2 and args.partner_language:
        raise SystemExit("--partner-language is for a demo of two: with three, Bruno speaks "
                         "Portuguese and Carla Spanish")
    if args.gateway and args.mode:
        raise SystemExit("--mode is for the mesh the demo starts: a running mesh has its own "
                         "session.mode (DRAGOMAN_SESSION_MODE)")
    out = Path(args.out)
    partner = args.partner_language or "pt"
    if args.gateway:
        await demo.run(args.gateway, out, partner, participants=args.participants)
        return 0
    env = {"DRAGOMAN_SESSION_MODE": args.mode} if args.mode else {}
    async with _mesh(settings, _log_dir(args.log_dir), args, env=env) as mesh:
        await demo.run(_entry_address(mesh, settings), out, partner, participants=args.participants)
    return 0


async def _interpret(args: argparse.Namespace, settings: config.Settings) -> int:
    from dragoman import languages
    from dragoman_tools import interpret

    # everything a user can get wrong is checked before the mesh takes its time to start
    source = languages.normalise(args.source, "--from")
    target = languages.normalise(args.target, "--to")
    speed = interpret.check_speed(args.speed, 0.0 if args.gateway else settings.session.max_audio_speed)
    samples = interpret.read_audio(args.audio)
    speech_out = Path(args.speech_out) if args.speech_out else None
    name = Path(args.audio).name
    if args.gateway:
        await interpret.run(args.gateway, samples, name, source, target, speed=speed, speech_out=speech_out)
        return 0
    async with _mesh(settings, _log_dir(args.log_dir), out=sys.stderr):
        await interpret.run(settings.addresses.gateway, samples, name, source, target,
                            speed=speed, speech_out=speech_out)
    return 0


def _password(args: argparse.Namespace) -> str:
    if not args.username:
        raise InvalidArgument("--username (or $DRAGOMAN_USERNAME) is required")
    return os.environ.get("DRAGOMAN_PASSWORD") or getpass.getpass(f"password of {args.username}: ")


def _fixed_translation(text: str) -> vpb.FixedTranslation:
    pair, _, entry = text.rpartition(":") if text.count(":") >= 2 else ("", "", "")
    source, _, target = pair.partition(":")
    term, eq, translation = entry.partition("=")
    if not (source and target and eq):
        raise InvalidArgument(f"--translate {text!r}: give SRC:TGT:TERM=TRANSLATION, "
                              "e.g. 'en:pt:front desk=receção'")
    return vpb.FixedTranslation(source_language_code=source, target_language_code=target,
                                source=term, target=translation)


async def _vocabularies(args: argparse.Namespace, settings: config.Settings) -> int:
    password = _password(args)
    async with await dragoman_client.connect(args.gateway or settings.addresses.gateway) as client:
        await client.login(args.username, password)
        if args.vocabularies_command == "add":
            made = await client.create_vocabulary(vpb.Vocabulary(
                display_name=args.name, terms=args.term, do_not_translate=args.keep,
                translations=[_fixed_translation(t) for t in args.translate]))
            print(made.vocabulary_id)
        elif args.vocabularies_command == "delete":
            await client.delete_vocabulary(args.vocabulary_id)
        else:
            for v in await client.list_vocabularies():
                fixed = [f"{t.source_language_code}:{t.target_language_code}:{t.source}={t.target}"
                         for t in v.translations]
                print("\t".join([v.vocabulary_id, v.display_name, ", ".join(v.terms),
                                 ", ".join(fixed), ", ".join(v.do_not_translate)]))
    return 0


async def _recordings(args: argparse.Namespace, settings: config.Settings) -> int:
    from google.protobuf import json_format

    password = _password(args)
    async with await dragoman_client.connect(args.gateway or settings.addresses.gateway) as client:
        await client.login(args.username, password)
        if args.recordings_command == "list":
            for r in await client.list_recordings(args.session):
                print("\t".join([r.recording_id, dragoman_client.recording_pb2.RecordingState.Name(
                    r.state), r.request_time.ToJsonString(), f"{r.duration.ToTimedelta()}",
                    str(r.utterance_count), str(r.size_bytes)]))
            return 0
        recording, utterances = await client.download_recording(
            args.recording_id, language_codes=args.language)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts = []
    for u in utterances:
        for s in u.speech:
            name = "-".join(x for x in (u.utterance_id, s.language_code, s.voice) if x)
            (out / f"{name}.ogg").write_bytes(s.ogg_opus)
        if u.original_voice_ogg_opus:
            (out / f"{u.utterance_id}-voice.ogg").write_bytes(u.original_voice_ogg_opus)
        text = dragoman_client.recording_pb2.RecordedUtterance()
        text.CopyFrom(u)
        text.ClearField("speech")
        text.ClearField("original_voice_ogg_opus")
        texts.append(json_format.MessageToDict(text))
    (out / "recording.json").write_text(json.dumps(
        {"recording": json_format.MessageToDict(recording), "utterances": texts},
        ensure_ascii=False, indent=2))
    print(f"wrote {out / 'recording.json'} and {sum(len(u.speech) for u in utterances)} speech files",
          file=sys.stderr)
    return 0


async def _export_transcript(args: argparse.Namespace, settings: config.Settings) -> int:
    password = _password(args)
    async with await dragoman_client.connect(args.gateway or settings.addresses.gateway) as client:
        await client.login(args.username, password)
        reply = await client.export_transcript(args.session_id, args.format)
    content = _opened(reply.content_type, reply.content, args.key_file)
    if args.out and args.out != "-":
        Path(args.out).write_bytes(content)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    return 0


def _opened(content_type: str, content: bytes, key_file: str | None) -> bytes:
    """The transcript to write: a sealed one opened with the key in `key_file`."""
    from dragoman.db.crypto import DecryptionError
    from session_svc.transcripts import open_sealed

    sealed = content_type.startswith("application/vnd.dragoman.sealed-transcript+json")
    if not key_file:
        if sealed:
            print("the session is participant-keyed: the transcript is sealed with your key "
                  "(open it with --key-file)", file=sys.stderr)
        return content
    if not sealed:
        raise InvalidArgument("--key-file is for participant-keyed sessions; this transcript "
                              "is not sealed")
    key = Path(key_file).read_bytes()
    if len(key) != 32:
        try:
            key = base64.b64decode(key.strip(), validate=True)
        except binascii.Error:
            pass
    if len(key) != 32:
        raise InvalidArgument(f"--key-file must hold a 32-byte key, raw or base64: {key_file}")
    try:
        opened = open_sealed(content, key)
    except DecryptionError:
        raise InvalidArgument(f"the key in {key_file} does not open this transcript: it is not "
                              "the key you streamed with in this session") from None
    return (json.dumps(opened, ensure_ascii=False, indent=1) + "\n").encode()


def _tls_keys(args: argparse.Namespace) -> int:
    if args.days < 1:
        raise InvalidArgument(f"--days must be 1 or more, got {args.days}")
    written = tls.issue_mesh(args.out, args.roles or tls.ROLES, args.namespace, args.dns, args.days)
    for path in written:
        print(path)
    return 0


async def _database(args: argparse.Namespace, settings: config.Settings) -> int:
    from dragoman import db
    from dragoman.db import crypto

    if args.command == "keys" and args.keys_command == "generate":
        print(crypto.new_key_entry(args.id))
        return 0
    if args.command == "db":
        applied = await db.upgrade(settings.database)
        print(f"applied {', '.join(f'{m.version:04d}_{m.name}' for m in applied)}" if applied
              else "the schema is up to date")
        return 0
    # translation_logs and recording_items are session_svc's: re-encrypted through its code
    from session_svc import recordings
    from session_svc.store import rotate_keys

    keyring = db.load_keyring(settings.database)
    async with await db.connect(settings.database) as conn:
        rotated = await rotate_keys(conn, keyring)
        items = await recordings.rotate_keys(conn, keyring)
    print(f"re-encrypted {rotated} translation logs and {items} recording items "
          f"under key {keyring.primary_id!r}")
    return 0


async def _admin(args: argparse.Namespace, settings: config.Settings) -> int:
    """Roles are the gateway's (its users table): the command goes through its store,
    straight to PostgreSQL, so no public call can ever grant one."""
    from datetime import UTC, datetime

    from dragoman import db
    from gateway.pgstore import PgUserStore

    database = await db.open_database(settings.database)
    try:
        store = PgUserStore(database)
        if args.admin_command == "list":
            for user in await store.list_admins():
                created = datetime.fromtimestamp(user.create_time_s, UTC).isoformat(timespec="seconds")
                print(f"{user.username}\t{user.user_id}\t{created}")
            return 0
        user = await store.set_admin(args.username, args.admin_command == "create")
        print(f"{user.username} is {'an admin' if args.admin_command == 'create' else 'no longer an admin'}")
        return 0
    finally:
        await database.close()


def _mesh_tls(settings: config.Settings) -> tls.MeshTls | None:
    """This machine's mesh credentials, for the clients of internal services (tls.enabled)."""
    return tls.MeshTls.from_settings(settings.tls)


async def _transcribe(args: argparse.Namespace, settings: config.Settings) -> int:
    from dragoman.stt.v1 import stt_pb2, stt_pb2_grpc

    samples = audio.decode_file(args.audio, audio.STT_RATE_HZ)
    pcm = audio.float_to_pcm16(samples)

    async def requests() -> AsyncIterator[stt_pb2.StreamingRecognizeRequest]:
        yield stt_pb2.StreamingRecognizeRequest(config=stt_pb2.StreamingRecognitionConfig(
            language_code=args.language, encoding=stt_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=audio.STT_RATE_HZ, interim_results=args.partials))
        for chunk in audio.chunks(pcm, audio.STT_RATE_HZ, 100):
            yield stt_pb2.StreamingRecognizeRequest(audio=chunk)

    finals = []
    async with rpc.channel(args.stt or settings.addresses.stt, tls=_mesh_tls(settings),
                           server_role="stt") as ch:
        async for response in stt_pb2_grpc.SpeechToTextServiceStub(ch).StreamingRecognize(requests()):
            if not response.HasField("result"):
                continue
            r = response.result
            if r.is_final and r.transcript.strip():
                finals.append(r.transcript.strip())
            elif args.partials:
                print(f"… {r.transcript}", file=sys.stderr)
    print(" ".join(finals))
    return 0


async def _translate(args: argparse.Namespace, settings: config.Settings) -> int:
    from dragoman.mt.v1 import mt_pb2, mt_pb2_grpc

    lines = sys.stdin if args.text == "-" else [args.text]
    async with rpc.channel(args.mt or settings.addresses.mt, tls=_mesh_tls(settings),
                           server_role="mt") as ch:
        stub = mt_pb2_grpc.TranslationServiceStub(ch)
        for line in lines:
            text = line.rstrip("\n")
            if not text.strip():
                print()
                continue
            reply = await stub.Translate(mt_pb2.TranslateRequest(
                source_language_code=args.source, target_language_code=args.target, segments=[text]))
            print(reply.translations[0].text, flush=True)
    return 0


async def _synthesize(args: argparse.Namespace, settings: config.Settings) -> int:
    from dragoman.tts.v1 import tts_pb2, tts_pb2_grpc

    parts, rate = [], 0
    async with rpc.channel(args.tts or settings.addresses.tts, tls=_mesh_tls(settings),
                           server_role="tts") as ch:
        request = tts_pb2.SynthesizeRequest(
            text=args.text, language_code=args.language, voice=args.voice,
            sample_rate_hertz=args.rate, encoding=tts_pb2.AUDIO_ENCODING_LINEAR16)
        async for chunk in tts_pb2_grpc.TextToSpeechServiceStub(ch).Synthesize(request):
            parts.append(chunk.audio)
            rate = chunk.sample_rate_hertz
    path = audio.write_wav(args.output, b"".join(parts), rate)
    seconds = sum(map(len, parts)) / 2 / max(rate, 1)
    print(f"wrote {path} ({seconds:.1f} s at {rate} Hz)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
