"""The Typer application object and what every command module shares (consoles, the --db option)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

app = typer.Typer(
    help="Facial-expression timelines, session affect measures and PHQ estimates from session recordings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one-line errors stay one line

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="FERVIDEO_DB",
        help="SQLAlchemy URL or SQLite path [default: ~/.local/share/fervideo/fervideo.sqlite]",
    ),
]


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)],
    )
