"""`fervideo ...` subcommands. Thin: parse arguments, call the library, print.

Each command group lives in its own module and registers itself on `app` when imported below.
`main()` owns the exit-code convention (README, "Exit codes"; docs/architecture.md):

    0 ok · 1 error · 2 usage or bad input · 3 model · 4 database · 5 export · 6 PHQ refusal ·
    130 interrupted (SIGINT, Ctrl-C) · 143 terminated (SIGTERM)

Errors a user can cause (FervideoError, a usage error, a database the driver refuses) are printed as one
line on stderr, without a traceback; programming errors raise normally.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

import typer

import fervideo.cli.commands_core  # noqa: F401  (registers sessions, models, db, version)
import fervideo.cli.commands_dashboard  # noqa: F401  (registers `fervideo dashboard`)
import fervideo.cli.commands_export  # noqa: F401  (registers `fervideo export`)
import fervideo.cli.commands_features  # noqa: F401  (registers `fervideo features`)
import fervideo.cli.commands_openface  # noqa: F401  (registers `fervideo import-openface`)
import fervideo.cli.commands_phq  # noqa: F401  (registers `fervideo phq`)
import fervideo.cli.commands_process  # noqa: F401  (registers `fervideo process`: one video or a batch)
import fervideo.cli.commands_train  # noqa: F401  (registers `fervideo train`)
from fervideo.cli.app import app, err_console
from fervideo.cli.arguments import shown
from fervideo.errors import FervideoError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DATABASE = 0, 1, 2, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 128 + signal.SIGINT, 128 + signal.SIGTERM  # 130, 143: the shells' own


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so that every `except KeyboardInterrupt`
    (finish or roll back a chunk, mark the session) handles a `kill` the same way."""


# Signals that reached our own handlers during this run. A command that handles SIGINT/SIGTERM itself
# (`process` finishes or rolls back its chunks, prints what it did and exits 130/143) installs its own
# handlers meanwhile, so nothing lands here and nothing is printed twice.
_signals_seen: list[int] = []


def _on_stop_signal(signum, _frame) -> None:
    _signals_seen.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def main() -> None:
    """Console entry point: run the command, print a failure as one line, exit with the convention's code."""
    sys.exit(run())


def run(argv: Sequence[str] | None = None) -> int:
    """Run `fervideo ARGV` (default: sys.argv[1:]) and return the exit code; never raises for errors a
    user can cause."""
    _signals_seen.clear()
    previous = _install_stop_handlers()
    try:
        return _run_app(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _install_stop_handlers() -> dict:
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, _on_stop_signal)
        except ValueError:  # only the main thread may set handlers (tests may call run() from another)
            break
    return previous


def _run_app(argv: Sequence[str] | None) -> int:
    from typer._click import exceptions as click_exceptions  # typer >= 0.29 bundles its own click

    try:
        returned = app(args=list(argv) if argv is not None else None, prog_name="fervideo", standalone_mode=False)
    except FervideoError as error:
        return _fail(str(error), error.exit_code)
    except click_exceptions.NoArgsIsHelpError as error:  # bare `fervideo` / `fervideo db`: the help
        error.show()
        return EXIT_USAGE
    except click_exceptions.UsageError as error:
        return _fail(_usage_message(error, sys.argv[1:] if argv is None else argv), EXIT_USAGE)
    except click_exceptions.ClickException as error:
        return _fail(error.format_message(), error.exit_code)
    except Terminated:  # SIGTERM outside a command (typer only converts it inside one)
        return _stopped(terminated=True)
    except KeyboardInterrupt:
        return _stopped(terminated=False)
    except typer.Abort:  # end of input at a prompt
        return _fail("aborted", EXIT_ERROR)
    except SystemExit as done:
        return _exit_status(done.code)
    except OSError as error:  # a file the command had to read or write (permissions, disk full, ...)
        if error.filename is None:
            raise
        return _fail(f"{error.filename}: {error.strerror}", EXIT_ERROR)
    except Exception as error:
        database_message = _database_failure(error)
        if database_message is None:
            raise
        return _fail(database_message, EXIT_DATABASE)
    code = returned if isinstance(returned, int) and not isinstance(returned, bool) else EXIT_OK
    if code == EXIT_INTERRUPTED and _signals_seen:
        # typer turns a KeyboardInterrupt inside a command into Exit(130), silently; say what happened.
        return _stopped(terminated=signal.SIGTERM in _signals_seen)
    return code


def _exit_status(code: object) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    err_console.print(shown(code), highlight=False)  # sys.exit("message"): Python's convention, exit 1
    return EXIT_ERROR


def _usage_message(error, argv: Sequence[str]) -> str:
    """Click's message plus where to look, on one line (Click prints usage, hint and message on three)."""
    message = error.format_message().replace("Value error, ", "")
    if isinstance(error, _no_such_option()):
        dashed_file = next((arg for arg in argv if arg.startswith("-") and not arg.startswith("--")
                            and ("." in arg or "/" in arg)), None)
        if dashed_file is not None:
            message += f" (for the file {dashed_file!r}, write ./{dashed_file})"
    if error.ctx is not None:
        message += f" (see `{error.ctx.command_path} --help`)"
    return message


def _no_such_option() -> type[Exception]:
    from typer._click.exceptions import NoSuchOption

    return NoSuchOption


def _fail(message: str, code: int) -> int:
    err_console.print(f"[red]error:[/red] {shown(message)}", highlight=False)
    return code


def _stopped(terminated: bool) -> int:
    err_console.print("terminated" if terminated else "interrupted", highlight=False)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def _database_failure(error: Exception) -> str | None:
    """A one-line message when a database driver error escaped the library (any command, any query)."""
    exc_module = sys.modules.get("sqlalchemy.exc")
    if exc_module is None or not isinstance(error, exc_module.DBAPIError):
        return None
    from fervideo.store.engine import describe_database_error

    return describe_database_error(error, "given with --db")


__all__ = ["Terminated", "app", "main", "run"]
