"""`python -m training classifier --config FILE.yaml` (and `evaluate`, `export`): the same commands as
`fervideo train ...`, with the same one-line errors."""

import sys

import click

from fervideo.cli.app import err_console
from fervideo.cli.commands_train import train_app
from fervideo.errors import FervideoError


def main() -> None:
    try:
        train_app(standalone_mode=False)
    except FervideoError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False)
        sys.exit(error.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
