"""A test client of ``spane web`` on the installed runtime, with API tokens at hand."""

from __future__ import annotations

import time
from typing import Any

import httpx2 as httpx
from starlette.testclient import TestClient

import spane
from spane import tokens
from spane.web import create_app


class Web:
    """The app behind a test client, an admin token, and one token per tenant asked for;
    the workflow ``definitions`` are registered first."""

    def __init__(self, *definitions: dict[str, Any]) -> None:
        for definition in definitions:
            spane.register_workflow(definition)
        self.client = TestClient(create_app())
        self.admin = tokens.create_token(None, label="tests")[1]
        self._tenants: dict[str, str] = {}

    def token(self, tenant: str | None = None) -> str:
        """The admin token, or a token of ``tenant`` (created once)."""
        if tenant is None:
            return self.admin
        if tenant not in self._tenants:
            self._tenants[tenant] = tokens.create_token(tenant)[1]
        return self._tenants[tenant]

    def call(
        self, method: str, path: str, *, tenant: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request under ``/api/v1`` with the admin token or ``tenant``'s."""
        headers = {"Authorization": f"Bearer {self.token(tenant)}", **kwargs.pop("headers", {})}
        return self.client.request(method, "/api/v1" + path, headers=headers, **kwargs)

    def wait(self, execution_id: str, statuses: tuple[str, ...], timeout: float = 30) -> Any:
        """Poll the API until the execution's status is one of ``statuses``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.call("GET", f"/executions/{execution_id}").json()
            if body["status"] in statuses or time.monotonic() > deadline:
                return body
            time.sleep(0.05)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Web:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
