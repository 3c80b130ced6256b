"""CPU cost of the ``Metrics`` middleware's hooks, per node attempt and per message.

    python bench/metrics_hooks.py [--iterations 20000] [--repeats 7]

Runs the hooks the way a worker process does (multiprocess mode, values in files of a
temporary folder) and prints the best of several repeats, so that other load on the
machine inflates the numbers as little as possible. A chain node run inline costs one
attempt; a node reached by message costs one attempt and one message.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import dramatiq

    from spane.blobs import BlobStats
    from spane.middleware.attempts import Attempt, AttemptOutcome, AttemptResult
    from spane.middleware.metrics import Metrics

    with tempfile.TemporaryDirectory(prefix="spane-metrics-hooks-") as folder:
        metrics = Metrics(Path(folder), (), blob_stats=BlobStats, serve=lambda: 0)
        metrics.after_process_boot(None)  # type: ignore[arg-type]
        attempt = Attempt(
            execution_id="e",
            workflow_id="wf",
            version=1,
            node_id="n",
            node_type="noop",
            lane="default",
            tenant="default",
            attempt=1,
            config=None,
            inline=True,
            ready_at=time.time(),
        )
        result = AttemptResult(AttemptOutcome.COMPLETED)
        message = dramatiq.Message(
            queue_name="spane.default",
            actor_name="spane.node.noop.default",
            args=(),
            kwargs={},
            options={},
        )
        n = args.iterations

        def attempts() -> None:
            for _ in range(n):
                metrics.before_attempt(None, attempt)  # type: ignore[arg-type]
                metrics.after_attempt(None, attempt, result)  # type: ignore[arg-type]

        def messages() -> None:
            for _ in range(n):
                metrics.before_process_message(None, message)  # type: ignore[arg-type]
                metrics.after_process_message(None, message)  # type: ignore[arg-type]

        for name, run in (("per attempt", attempts), ("per message", messages)):
            best = float("inf")
            for _ in range(args.repeats):
                start = time.process_time()
                run()
                best = min(best, time.process_time() - start)
            print(f"{name}: {1e6 * best / n:.1f} us CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
