"""The Triton host's models, assembled from what each service offers in its `hosted` module.

The model interfaces (BYTES tensors, one row per request) are in dragoman.hosting.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import mt_svc.hosted
import stt_svc.hosted
import tts_svc.hosted
from dragoman import config, errors
from dragoman.hosting import HostedModel, info_model, spec_for

ROLES: dict[str, ModuleType] = {"stt": stt_svc.hosted, "mt": mt_svc.hosted, "tts": tts_svc.hosted}
"""Each role's hosting module: in_process(), only() and load()."""


def in_process(settings: config.Settings) -> config.Settings:
    """`settings` with the in-process engines wherever they name triton (the host loads real ones)."""
    for role in ROLES.values():
        settings = role.in_process(settings)
    return settings


def load(settings: config.Settings, roles: Sequence[str] = tuple(ROLES)) -> list[HostedModel]:
    """Loads and warms up the configured engines of `roles` and wraps each as a hosted model,
    plus dragoman-info. Blocking."""
    settings = in_process(settings)
    hosted = [m for role in roles for m in ROLES[role].load(settings)]
    return [*hosted, info_model([h.hosted for h in hosted])]


def load_one(settings: config.Settings, name: str) -> HostedModel:
    """Loads only the engine behind hosted model `name` ("stt-whisper-base", "mt-bergamot", ...),
    for a Triton Python-backend instance. Blocking."""
    role, engine = spec_for(name).role, name.partition("-")[2]
    settings = ROLES[role].only(in_process(settings), engine)
    found = [m for m in load(settings, [role]) if m.spec.name == name]
    if not found:
        raise errors.FailedPrecondition(f"hosted model {name!r} could not be loaded here")
    return found[0]
