"""The ``spane`` command: run, inspect and control workflows from a shell.

Exit codes: 0 success (an execution completed), 1 an execution failed or was cancelled
(or a definition given to ``validate`` is invalid), 2 a usage, definition or input error.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.text import Text

from .. import errors, logs, outages, runtime
from ..settings import Settings, from_env
from . import commands, parser

__all__ = ["main"]

# Errors that mean "fix the command, file or input": exit 2, like argparse usage errors.
_USAGE_ERRORS = (
    errors.ConfigurationError,
    errors.DefinitionError,
    errors.InputError,
    errors.UnknownWorkflow,
    errors.UnknownExecution,
    errors.UnknownSchedule,
    commands.UsageError,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``spane`` with ``argv`` (default: the process arguments); return the exit code."""
    try:
        args = parser.build().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 2
    io = commands.Streams(out=_console(stderr=False), err=_console(stderr=True))
    owned = runtime.current() is None
    try:
        _prepare(args.module, owned)
        code: int = args.handler(args, io)
        return code
    except errors.DefinitionError as exc:
        commands.print_problems(io.err, exc)
        return 2
    except errors.SpaneError as exc:
        io.err.print(Text(f"error: {exc}", style="red"), soft_wrap=True)
        return 2 if isinstance(exc, _USAGE_ERRORS) else 1
    except KeyboardInterrupt:
        io.err.print(Text("interrupted", style="red"))
        return 130
    except Exception as exc:
        line = outages.describe(_settings(), exc)
        if line is None:
            raise
        io.err.print(Text(f"error: {line}", style="red"), soft_wrap=True, highlight=False)
        return 2
    finally:
        if owned:
            _close()


def _settings() -> Settings:
    """The settings of the runtime in use, or those the environment gives."""
    current = runtime.current()
    return current.settings if current is not None else from_env()


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped output: keep ids and table rows whole for grep and less
    return console


def _prepare(modules: Sequence[str], owned: bool) -> None:
    """Configure logging (quieter for a runtime this command will create), then import
    user modules."""
    settings = _settings()
    level = settings.log_level
    if owned and level == Settings().log_level:
        # The node table shows every retry and failure already, and log lines written
        # under a live view would tear it: unless asked otherwise, only errors are logged.
        level = "error"
    logs.configure(settings.log_format, level)
    names = [*modules, *settings.modules]
    if names and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: modules next to the workflows
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise errors.ConfigurationError(f"cannot import module {name!r}: {exc}") from None


def _close() -> None:
    """Stop the runtime this command created (its embedded worker and connections)."""
    created = runtime.install(None)
    if created is not None:
        created.close()
