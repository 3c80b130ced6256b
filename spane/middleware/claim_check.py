"""Claim check for message arguments: large values travel as blob references."""

from __future__ import annotations

from typing import Any

from dramatiq import Broker, Middleware

from .. import codec
from ..blobs import BlobStore

#: The key of the small object that replaces an offloaded argument.
CLAIM = "$spane_blob"
#: The tenant that message-argument blobs are scoped to unless the message names one.
MESSAGE_TENANT = "_messages"


class ClaimCheck(Middleware):
    """Offloads keyword arguments above ``threshold`` bytes before a message is sent,
    and resolves them before it is processed, so actors never see a reference.

    Args:
        threshold: Encoded size above which an argument is offloaded.
    """

    def __init__(self, threshold: int = 51200) -> None:
        self.threshold = threshold
        self.blobs: BlobStore | None = None

    @property
    def actor_options(self) -> set[str]:
        return {"spane_tenant"}

    def before_enqueue(self, broker: Broker, message: Any, delay: int | None) -> None:
        if self.blobs is None or not message.kwargs:
            return
        tenant = message.options.get("spane_tenant", MESSAGE_TENANT)
        for key, value in list(message.kwargs.items()):
            if isinstance(value, dict) and CLAIM in value:
                continue
            data = codec.encode(value)
            if len(data) > self.threshold:
                message.kwargs[key] = {CLAIM: self.blobs.put(tenant, data)}

    def before_process_message(self, broker: Broker, message: Any) -> None:
        if self.blobs is None or not message.kwargs:
            return
        tenant = message.options.get("spane_tenant", MESSAGE_TENANT)
        for key, value in list(message.kwargs.items()):
            if isinstance(value, dict) and set(value) == {CLAIM}:
                message.kwargs[key] = codec.loads(self.blobs.get(value[CLAIM], tenant=tenant))
