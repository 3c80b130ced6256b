"""``spane tokens``: create (shown once), list (never secrets), revoke."""

from __future__ import annotations

import json

import pytest

from spane import tokens
from spane.cli import main
from spane.runtime import Runtime


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_list_revoke(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "tokens", "create", "--tenant", "acme", "--label", "shop")
    token = out.strip()
    assert code == 0 and "tenant acme" in err and "not shown again" in err
    record = tokens.authenticate(token)
    assert record is not None and record.tenant == "acme" and record.label == "shop"
    code, out, _ = cli(capsys, "tokens", "create", "--admin", "--json")
    admin = json.loads(out)
    assert code == 0 and tokens.authenticate(admin["token"]).tenant is None  # type: ignore[union-attr]
    code, out, _ = cli(capsys, "tokens", "list", "--json")
    listed = json.loads(out)
    assert {(t["id"], t["tenant"]) for t in listed} == {(record.id, "acme"), (admin["id"], None)}
    assert token not in out and token.split("_")[2] not in out
    assert cli(capsys, "tokens", "revoke", record.id)[0] == 0
    assert tokens.authenticate(token) is None
    code, _, err = cli(capsys, "tokens", "revoke", record.id)
    assert code == 2 and "no live token" in err


def test_create_needs_a_tenant_or_admin(rt: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "tokens", "create")
    assert code == 2 and "--tenant NAME or --admin" in err
    code, _, err = cli(capsys, "tokens", "create", "--tenant", "no spaces")
    assert code == 2 and "tenant" in err
