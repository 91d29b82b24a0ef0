"""Who is calling: the identity the gateway asserted in metadata."""

from __future__ import annotations

import grpc

from dragoman import rpc
from dragoman.errors import Unauthenticated
from session_svc.sessions import Identity


def identity(context: grpc.aio.ServicerContext) -> Identity:
    meta = rpc.text_metadata(context)
    user_id = meta.get(rpc.USER_ID_HEADER, "")
    if not user_id:
        raise Unauthenticated("no caller identity: call through the gateway")
    return Identity(user_id=user_id, display_name=meta.get(rpc.USER_NAME_HEADER, user_id))
