"""The dashboard, served by the same app: server-rendered pages, a small script, no build."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ... import tokens
from .. import auth
from ..errors import from_exception
from . import lanes, pages
from .html import e, page

_STATIC = Path(__file__).parent / "static"


def _guarded(render: pages.Render) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        principal = await run_in_threadpool(auth.identify, request)
        if principal is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)
        try:
            html = await run_in_threadpool(render, request, principal)
        except Exception as exc:
            failure = from_exception(exc)
            message = bytes(failure.body).decode()
            body = f"<h1>Error {failure.status_code}</h1><pre class='error'>{e(message)}</pre>"
            return HTMLResponse(page("Error", body, principal), status_code=failure.status_code)
        return HTMLResponse(html)

    return handle


def _target(request: Request) -> str:
    """Where to go after signing in: a path on this site only (no open redirect)."""
    target = request.query_params.get("next", "/")
    return target if target.startswith("/") and not target.startswith("//") else "/"


async def _login_form(request: Request) -> Response:
    return HTMLResponse(pages.login(_target(request)))


async def _login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0].strip()
    record = await run_in_threadpool(tokens.authenticate, token) if token else None
    if record is None:
        return HTMLResponse(
            pages.login(_target(request), "That token is not valid."), status_code=401
        )
    response = RedirectResponse(_target(request), status_code=303)
    response.set_cookie(
        auth.COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=7 * 86400,
    )
    return response


async def _logout(request: Request) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(auth.COOKIE)
    return response


def routes() -> list[BaseRoute]:
    """The dashboard's routes."""
    return [
        Route("/", _guarded(pages.executions), methods=["GET"]),
        Route("/ui/executions/{execution_id}", _guarded(pages.execution), methods=["GET"]),
        Route("/ui/workflows", _guarded(pages.workflows), methods=["GET"]),
        Route("/ui/workflows/{workflow_id}", _guarded(pages.workflow), methods=["GET"]),
        Route("/ui/dead-letters", _guarded(pages.dead_letters), methods=["GET"]),
        Route("/ui/schedules", _guarded(pages.schedules), methods=["GET"]),
        Route("/ui/breakers", _guarded(pages.breakers), methods=["GET"]),
        Route("/ui/workers", _guarded(pages.workers), methods=["GET"]),
        Route("/ui/lanes", _guarded(lanes.lanes), methods=["GET"]),
        Route("/ui/login", _login_form, methods=["GET"]),
        Route("/ui/login", _login, methods=["POST"]),
        Route("/ui/logout", _logout, methods=["POST"]),
        Mount("/ui/static", StaticFiles(directory=_STATIC), name="static"),
    ]
