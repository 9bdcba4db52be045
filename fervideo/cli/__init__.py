"""`fervideo ...` subcommands. Thin: parse arguments, call the library, print. Errors a user can
cause (FervideoError) are printed as one line without a traceback and exit non-zero.

Each command group lives in its own module and registers itself on `app` when imported below.
"""

from __future__ import annotations

import sys

import click

import fervideo.cli.commands_core  # noqa: F401  (registers process, sessions, models, db, version)
import fervideo.cli.commands_dashboard  # noqa: F401  (registers `fervideo dashboard`)
import fervideo.cli.commands_export  # noqa: F401  (registers `fervideo export`)
import fervideo.cli.commands_features  # noqa: F401  (registers `fervideo features`)
import fervideo.cli.commands_openface  # noqa: F401  (registers `fervideo import-openface`)
import fervideo.cli.commands_phq  # noqa: F401  (registers `fervideo phq`)
import fervideo.cli.commands_train  # noqa: F401  (registers `fervideo train`)
from fervideo.cli.app import app, err_console
from fervideo.errors import FervideoError


def main() -> None:
    """Console entry point: one-line errors for problems the user can fix, no tracebacks."""
    try:
        app(standalone_mode=False)
    except FervideoError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        err_console.print("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
