"""Who is calling: the user a gateway's identity assertion names (dragoman.assertion)."""

from __future__ import annotations

import grpc

from dragoman.assertion import Assertions
from session_svc.sessions import Identity


class Callers:
    """Identifies callers by their verified identity assertion; a call without a
    valid one (anyone but a gateway) gets UNAUTHENTICATED."""

    def __init__(self, assertions: Assertions) -> None:
        self._assertions = assertions

    def __call__(self, context: grpc.aio.ServicerContext) -> Identity:
        asserted = self._assertions.from_metadata(context.invocation_metadata() or ())
        return Identity(user_id=asserted.user_id, display_name=asserted.username)
