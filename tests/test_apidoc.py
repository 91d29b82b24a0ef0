"""docs/api.md is generated from the public protos and covers all of them."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

from google.protobuf.descriptor import Descriptor, EnumDescriptor

from dragoman.v1 import auth_pb2, conversation_pb2, sessions_pb2, vocabulary_pb2
from tests.conftest import ROOT

API = ROOT / "docs" / "api.md"


def gendocs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gendocs", ROOT / "scripts" / "gendocs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def enums_of(message: Descriptor) -> list[EnumDescriptor]:
    return [*message.enum_types, *(e for m in message.nested_types for e in enums_of(m))]


def test_every_rpc_message_field_and_enum_value_is_documented() -> None:
    text = API.read_text()
    for module in (auth_pb2, conversation_pb2, sessions_pb2, vocabulary_pb2):
        file = module.DESCRIPTOR
        for service in file.services_by_name.values():
            assert f"### {service.name}\n" in text
            for method in service.methods:
                assert f"#### {service.name}.{method.name}\n" in text
        messages = list(file.message_types_by_name.values())
        enums = list(file.enum_types_by_name.values())
        while messages:
            message = messages.pop()
            if message.GetOptions().map_entry:
                continue
            messages += message.nested_types
            enums += message.enum_types
            assert f"### {message.full_name.removeprefix('dragoman.v1.')}\n" in text
            for field in message.fields:
                assert f"| `{field.name}` |" in text and f"| {field.number} |" in text
        for enum in enums:
            assert f"### {enum.full_name.removeprefix('dragoman.v1.')}\n" in text
            for value in enum.values:
                assert f"| `{value.name}` | {value.number} |" in text


def test_a_changed_proto_comment_changes_the_reference(tmp_path: Path) -> None:
    """What the drift check (genproto --check) relies on: the comments are read, not kept."""
    docs = gendocs()
    assert docs.render(docs.descriptors()) == API.read_text()
    proto = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", proto)
    path = proto / "dragoman" / "v1" / "conversation.proto"
    source = path.read_text()
    old = "  // Audio bytes in the joined encoding; at most 64 KiB.\n"
    assert old in source
    path.write_text(source.replace(old, "  // Audio bytes, at most 32 KiB | now.\n"))
    changed = docs.render(docs.descriptors(proto))
    assert "| `data` | `bytes` | 1 | Audio bytes, at most 32 KiB \\| now. |" in changed
    assert "at most 64 KiB" not in changed
