"""The dashboard in headless Chromium: nodes turn completed live on the DAG page, pause
and resume from the page, retry a dead letter from the page, pause, resume and trigger a
schedule from its page.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skips without it, fails under CI.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import spane
from spane import tokens
from spane.runtime import Runtime
from spane.web import create_app
from tests.conftest import CI
from tests.services import free_port

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_MS = 30_000


@pytest.fixture
def server(rt: Runtime) -> Iterator[str]:
    """``spane web`` on a free loopback port, in a thread of this process."""
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(), log_level="error")
    app_server = uvicorn.Server(config)
    thread = threading.Thread(target=app_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not app_server.started:
        assert time.monotonic() < deadline, "the web server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        app_server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def page(server: str) -> Iterator[Any]:
    """A signed-in Chromium page (admin token)."""
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install -y chromium chromium-driver)"
        if CI:
            pytest.fail(message + "; CI=true needs it")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    token = tokens.create_token(None, label="browser test")[1]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(WAIT_MS)
        tab.goto(server + "/")
        assert "/ui/login" in tab.url  # no token, no access
        tab.fill("input[name=token]", token)
        tab.click("form.login button")
        tab.wait_for_selector("#executions")
        try:
            yield tab
        finally:
            browser.close()


def node(name: str, status: str) -> str:
    return f'g.node[data-node="{name}"][data-status="{status}"]'


def test_nodes_turn_completed_live_and_pause_resume_from_the_page(page: Any, server: str) -> None:
    spane.register_workflow(
        {
            "id": "browsed",
            "nodes": [
                {"id": "fetch", "type": "echo"},
                {"id": "hold", "type": "delay", "after": ["fetch"], "config": {"duration": "4s"}},
                {"id": "ship", "type": "echo", "after": ["hold"]},
                {"id": "notify", "type": "echo", "after": ["ship"]},
            ],
        }
    )
    execution_id = spane.enqueue_workflow("browsed", {"order": 1})
    page.goto(server + "/")
    page.click(f'#executions tr[data-id="{execution_id}"] a.mono')
    page.wait_for_selector("svg.dag")
    page.wait_for_selector(node("fetch", "completed"))
    page.wait_for_selector(node("hold", "waiting"))
    page.click('button[data-action="pause"]')
    page.wait_for_selector('#execution-status [data-status="paused"]')
    assert spane.get_execution(execution_id).status == "paused"
    assert page.locator(node("notify", "completed")).count() == 0
    page.click('button[data-action="resume"]')
    for name in ("hold", "ship", "notify"):
        page.wait_for_selector(node(name, "completed"))  # no reload: events drive the page
    page.wait_for_selector('#execution-status [data-status="completed"]')
    kinds = [event.kind for event in spane.history(execution_id)]
    assert "paused" in kinds and "resumed" in kinds
    page.click('g.node[data-node="ship"]')
    page.wait_for_selector("#node-panel h3:has-text('ship')")
    page.click("#node-panel button")
    page.wait_for_selector('#value:has-text("order")')


def test_retry_a_dead_letter_from_the_page(page: Any, server: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("closed")
    spane.register_workflow(
        {
            "id": "gated",
            "nodes": [
                {"id": "gate", "type": "fail_while_file", "config": {"path": str(gate)}},
                {"id": "after", "type": "echo", "after": ["gate"]},
            ],
        }
    )
    execution_id = spane.enqueue_workflow("gated", {"n": 1})
    assert spane.wait(execution_id, timeout=30).status == "failed"
    gate.unlink()
    page.goto(server + "/ui/dead-letters")
    row = page.locator("#dead-letters tbody tr", has_text=execution_id[:8])
    row.locator('button[data-action="retry-dead-letter"]').click()
    row.locator('[data-status="retried"]').wait_for()
    assert spane.wait(execution_id, timeout=30).status == "completed"
    page.goto(server + f"/ui/executions/{execution_id}")
    page.wait_for_selector(node("after", "completed"))


def test_pause_resume_and_trigger_a_schedule_from_the_page(page: Any, server: str) -> None:
    spane.register_workflow({"id": "nightly", "nodes": [{"id": "a", "type": "echo"}]})
    spane.schedule("nightly", {"n": 1}, cron="0 3 * * *", schedule_id="nightly-run")
    page.goto(server + "/")
    page.click("header a[href='/ui/schedules']")
    row = page.locator('#schedules tr[data-schedule="nightly-run"]')
    row.locator('button[data-action="pause"]').click()
    row.locator('[data-status="paused"]').wait_for()
    assert spane.list_schedules()[0].paused
    row.locator('button[data-action="resume"]').click()
    row.locator('[data-status="active"]').wait_for()
    assert not spane.list_schedules()[0].paused
    row.locator('button[data-action="trigger"]').click()
    row.locator(".last a.mono").wait_for()
    (execution_id,) = [r.id for r in spane.list_executions(workflow_id="nightly")]
    assert spane.wait(execution_id, timeout=30).output == {"n": 1}
