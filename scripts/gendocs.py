"""Render docs/api.md from the comments of the public protos (proto/dragoman/v1).

    python scripts/gendocs.py           # write docs/api.md
    python scripts/gendocs.py --check   # exit 1 when docs/api.md is stale

protoc (the pinned grpcio-tools) reads the protos and their comments into a
FileDescriptorSet with SourceCodeInfo; this script only lays that out as
Markdown. The registries offer no maintained Markdown generator installable
here (protoc-gen-doc is a Go binary), so the rendering is ours and the
parsing is protoc's. scripts/genproto.py calls this too, so `./dev.sh gen`
writes it and `genproto --check` fails on drift.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import descriptor_pb2 as d

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
PUBLIC = "dragoman/v1"
OUT = ROOT / "docs" / "api.md"

# Field numbers of the descriptor messages, which SourceCodeInfo paths are made of.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM, MESSAGE_ONEOF = 2, 3, 4, 8
ENUM_VALUE, SERVICE_METHOD = 2, 2

SCALARS = {
    getattr(d.FieldDescriptorProto, name): name.removeprefix("TYPE_").lower()
    for name in d.FieldDescriptorProto.Type.keys()
}


def descriptors(proto: Path = PROTO) -> d.FileDescriptorSet:
    """The public protos under `proto`, parsed by protoc with their comments."""
    protos = sorted(str(p.relative_to(proto)) for p in (proto / PUBLIC).glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "api.binpb"
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto}", "--include_source_info",
             f"--descriptor_set_out={out}", *protos],
            check=True, cwd=proto)
        return d.FileDescriptorSet.FromString(out.read_bytes())


class Comments:
    """Leading comments of one file, by SourceCodeInfo path."""

    def __init__(self, file: d.FileDescriptorProto) -> None:
        self.by_path = {
            tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location
            if loc.leading_comments
        }

    def text(self, path: tuple[int, ...]) -> str:
        """The comment as paragraphs (protoc keeps the lines' leading space)."""
        lines = [line.removeprefix(" ").rstrip() for line in self.by_path.get(path, "").splitlines()]
        return "\n".join(lines).strip()

    def cell(self, path: tuple[int, ...]) -> str:
        """The comment on one line, for a table cell."""
        return " ".join(self.text(path).split()).replace("|", "\\|")


def anchor(full_name: str) -> str:
    """GitHub's anchor of the heading that names the type (package left out)."""
    return full_name.removeprefix("dragoman.v1.").lower().replace(".", "")


def link(type_name: str) -> str:
    name = type_name.lstrip(".")
    if name.startswith("dragoman.v1."):
        short = name.removeprefix("dragoman.v1.")
        return f"[{short}](#{anchor(name)})"
    return f"`{name}`"


def field_type(field: d.FieldDescriptorProto, maps: dict[str, d.DescriptorProto]) -> str:
    if field.type_name.lstrip(".") in maps:
        key, value = maps[field.type_name.lstrip(".")].field
        return f"map<{field_type(key, maps)}, {field_type(value, maps)}>"
    kind = link(field.type_name) if field.type_name else f"`{SCALARS[field.type]}`"
    if field.label == d.FieldDescriptorProto.LABEL_REPEATED:
        return f"repeated {kind}"
    return kind


def walk_messages(
    messages: list[d.DescriptorProto], prefix: str, path: tuple[int, ...], kind: int,
) -> Iterator[tuple[str, d.DescriptorProto, tuple[int, ...]]]:
    """Every message, nested ones after their parent, with its full name and path."""
    for i, message in enumerate(messages):
        name, here = f"{prefix}.{message.name}", (*path, kind, i)
        yield name, message, here
        yield from walk_messages(list(message.nested_type), name, here, MESSAGE_NESTED)


def render_service(
    out: list[str], package: str, service: d.ServiceDescriptorProto, path: tuple[int, ...],
    c: Comments,
) -> None:
    full = f"{package}.{service.name}"
    out += [f"### {service.name}", "", f"`{full}`", "", c.text(path), ""]
    for j, method in enumerate(service.method):
        request = ("stream " if method.client_streaming else "") + link(method.input_type)
        response = ("stream " if method.server_streaming else "") + link(method.output_type)
        out += [f"#### {service.name}.{method.name}", "",
                f"`rpc {method.name}` ({request}) returns ({response})", "",
                c.text((*path, SERVICE_METHOD, j)), ""]


def render_message(
    out: list[str], full: str, message: d.DescriptorProto, path: tuple[int, ...], c: Comments,
    maps: dict[str, d.DescriptorProto],
) -> None:
    out += [f"### {full.removeprefix('dragoman.v1.')}", "", c.text(path), ""]
    if not message.field:
        out += ["No fields.", ""]
        return
    real_oneofs = {f.oneof_index for f in message.field
                   if f.HasField("oneof_index") and not f.proto3_optional}
    out += ["| Field | Type | Number | Description |", "|---|---|---|---|"]
    for k, field in enumerate(message.field):
        note = c.cell((*path, MESSAGE_FIELD, k))
        if field.HasField("oneof_index") and field.oneof_index in real_oneofs:
            note = f"*oneof `{message.oneof_decl[field.oneof_index].name}`.* {note}"
        elif field.proto3_optional:
            note = f"*optional.* {note}"
        if field.options.deprecated:
            note = f"*deprecated.* {note}"
        out.append(f"| `{field.name}` | {field_type(field, maps)} | {field.number} | {note} |")
    out.append("")


def render_enum(
    out: list[str], full: str, enum: d.EnumDescriptorProto, path: tuple[int, ...], c: Comments,
) -> None:
    out += [f"### {full.removeprefix('dragoman.v1.')}", "", c.text(path), "",
            "| Value | Number | Description |", "|---|---|---|"]
    for k, value in enumerate(enum.value):
        out.append(f"| `{value.name}` | {value.number} | {c.cell((*path, ENUM_VALUE, k))} |")
    out.append("")


def render(files: d.FileDescriptorSet) -> str:
    out = [
        "# dragoman public API reference",
        "",
        "<!-- Generated by scripts/gendocs.py from proto/dragoman/v1/*.proto; do not edit. -->",
        "",
        "Package `dragoman.v1`, served by the gateway over gRPC (and gRPC-Web through",
        "Envoy). AuthService hands out tokens; SessionService and ConversationService",
        "calls carry `authorization: Bearer <access token>` metadata (ListLanguages",
        "needs none). The status codes each RPC returns are in its description;",
        "conversation events are the `kind` oneof of [ConversationEvent](#conversationevent),",
        "and problems reported inside a stream are [ErrorCode](#errorcode) values.",
        "New here? Start with [integrate.md](integrate.md).",
        "",
    ]
    # In the order an integrator meets them: sign in, make a session, talk.
    order = {f"{PUBLIC}/{n}.proto": i for i, n in enumerate(("auth", "sessions", "conversation"))}
    ordered = sorted(files.file, key=lambda f: (order.get(f.name, len(order)), f.name))
    out += ["## Services", ""]
    for file in ordered:
        for service in file.service:
            rpcs = ", ".join(f"[{m.name}](#{anchor(f'{service.name}.{m.name}')})" for m in service.method)
            out.append(f"- [{service.name}](#{anchor(service.name)}): {rpcs}")
    out.append("")
    for file in ordered:
        c = Comments(file)
        package = file.package
        maps = {name: m for name, m, _ in walk_messages(list(file.message_type), package, (), FILE_MESSAGE)
                if m.options.map_entry}
        out += [f"## {file.name}", ""]
        for i, service in enumerate(file.service):
            render_service(out, package, service, (FILE_SERVICE, i), c)
        for name, message, path in walk_messages(list(file.message_type), package, (), FILE_MESSAGE):
            if message.options.map_entry:
                continue
            render_message(out, name, message, path, c, maps)
            for k, enum in enumerate(message.enum_type):
                render_enum(out, f"{name}.{enum.name}", enum, (*path, MESSAGE_ENUM, k), c)
        for i, enum in enumerate(file.enum_type):
            render_enum(out, f"{package}.{enum.name}", enum, (FILE_ENUM, i), c)
    # Headings give GitHub-style anchors; a comment-less element leaves a blank line.
    text = "\n".join(out)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    args = parser.parse_args()
    text = render(descriptors())
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print("docs/api.md is stale; run: python scripts/gendocs.py", file=sys.stderr)
            return 1
        print("docs/api.md is up to date")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
