"""The Typer application object and what every command module shares (consoles, the --db option,
SESSION|--all resolution, per-item errors in loops)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import ProgressColumn, Task
from rich.table import Table
from rich.text import Text

from fervideo.cli.arguments import database_option, shown, visible_controls
from fervideo.errors import FervideoError, InvalidArgumentError

if TYPE_CHECKING:
    from sqlalchemy.orm import sessionmaker

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
        "--db", envvar="FERVIDEO_DB", callback=database_option,
        help="SQLAlchemy URL or SQLite path [default: ~/.local/share/fervideo/fervideo.sqlite]",
    ),
]


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
) -> None:
    handler = RichHandler(console=err_console, show_path=False, show_time=False)  # markup off by default
    handler.addFilter(_visible_controls_in_log)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler])


def _visible_controls_in_log(record: logging.LogRecord) -> bool:
    """Log messages quote paths and codes too: their escape sequences are shown, not obeyed."""
    record.msg, record.args = visible_controls(record.getMessage()), None
    return True


def resolve_sessions(db: str | None, session: int | None, all_sessions: bool) -> tuple[sessionmaker, list[int]]:
    """SESSION|--all checked (before the database is opened), then (sessionmaker, session ids): the one
    named, or every finished session in id order."""
    if (session is None) == (not all_sessions):
        raise InvalidArgumentError("give a SESSION id or --all (not both)")
    from sqlalchemy import select

    from fervideo.store import SessionStatus, VideoSession, open_database

    factory = open_database(db)
    if session is not None:
        return factory, [session]
    with factory() as dbs:
        return factory, list(dbs.scalars(select(VideoSession.id).where(VideoSession.status == SessionStatus.DONE)
                                         .order_by(VideoSession.id)))


class ItemErrors:
    """A command's loop over several items (videos, files, sessions): `with errors.guard():` around one
    item's work re-raises a FervideoError when there is only one item (the command fails with it), else
    prints it on one line, counts it and lets the loop go on."""

    def __init__(self, total: int, label: str = "error", colour: str = "red") -> None:
        self.total, self.label, self.colour, self.count = total, label, colour, 0

    @contextmanager
    def guard(self) -> Iterator[None]:
        try:
            yield
        except FervideoError as error:
            if self.total == 1:
                raise
            self.count += 1
            err_console.print(f"[{self.colour}]{self.label}:[/{self.colour}] {shown(error)}", highlight=False)


class CountColumn(ProgressColumn):
    """`done/total`, or what is happening while the total is not known yet (Rich's MofN shows "0/?")."""

    def __init__(self, waiting: str = "opening") -> None:
        super().__init__()
        self.waiting = waiting

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text(self.waiting, style="progress.download")
        return Text(f"{int(task.completed)}/{int(task.total)}", style="progress.download")


def data_table(*headers: str, whole: tuple[str, ...] = (), **table_options) -> Table:
    """A table whose cells are never cut with "…": the columns named in `whole` (ids, dates, numbers,
    model names) never wrap; every other column folds onto more lines when the terminal is narrow."""
    table = Table(**table_options)
    for header in headers:
        if header in whole:
            table.add_column(header, no_wrap=True, min_width=len(header))
        else:
            table.add_column(header, overflow="fold")
    return table
