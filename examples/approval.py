"""Run the human-approval example embedded: start it, answer it, print the outcome.

    python examples/approval.py

A person would answer with ``spane signal ID approval --payload '{...}'`` (or a web app
calling ``spane.signal``); here the script plays the manager, and also shows the
schedule that the workflow's trigger created.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import spane

DEFINITION = Path(__file__).with_name("approval.yaml")


def main() -> dict[str, Any]:
    """Register the workflow, start one report, approve it, and return the output."""
    spane.register_workflow(DEFINITION)
    for schedule in spane.list_schedules("expense-approval"):
        when = datetime.fromtimestamp(schedule.next_at or 0).astimezone()
        print(f"schedule {schedule.id}: {schedule.cron} ({schedule.timezone}), next {when:%c}")
    execution_id = spane.enqueue_workflow("expense-approval", {"team": "finance"})
    while spane.get_execution(execution_id).nodes["approval"].status != "waiting":
        time.sleep(0.05)
    print(f"{execution_id} waits for approval; approving it")
    spane.signal(execution_id, "approval", {"approved": True, "by": "ana"}, signal_id="ana-1")
    output: dict[str, Any] = spane.wait(execution_id, timeout=30).output
    print(output)
    return output


if __name__ == "__main__":
    main()
