"""Who is calling: the user a gateway's identity assertion names (dragoman.assertion).

With internal mutual TLS (dragoman.tls) an assertion counts only when the
call's TLS peer proved the gateway role: a stolen assertion, or the identity
key itself, is useless to any other process of the mesh.
"""

from __future__ import annotations

import grpc

from dragoman import tls
from dragoman.assertion import IDENTITY_HEADER, Assertions
from dragoman.errors import PermissionDenied
from session_svc.sessions import Identity

GATEWAY_ONLY = (f"{IDENTITY_HEADER} is taken only from a gateway: this peer's certificate "
                f"does not name {tls.role_uri('gateway')}")


class Callers:
    """Identifies callers by their verified identity assertion; a call without a
    valid one (anyone but a gateway) gets UNAUTHENTICATED. With `gateways_only`
    (internal mutual TLS on), a call whose TLS peer is not a gateway gets
    PERMISSION_DENIED whatever assertion it carries: its peer is known, and
    not allowed to speak for users."""

    def __init__(self, assertions: Assertions, gateways_only: bool = False) -> None:
        self._assertions = assertions
        self._gateways_only = gateways_only

    def __call__(self, context: grpc.aio.ServicerContext) -> Identity:
        if self._gateways_only and "gateway" not in tls.peer_roles(context):
            raise PermissionDenied(GATEWAY_ONLY)
        asserted = self._assertions.from_metadata(context.invocation_metadata() or ())
        return Identity(user_id=asserted.user_id, display_name=asserted.username)
