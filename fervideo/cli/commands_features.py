"""`fervideo features SESSION|--all [--recompute]`: compute, store and show session features."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import track
from rich.table import Table

from fervideo.cli.app import DbOption, app, console, err_console, resolve_sessions
from fervideo.cli.arguments import shown


@app.command()
def features(
    session: Annotated[int | None, typer.Argument(help="Session id (see `fervideo sessions`).")] = None,
    all_sessions: Annotated[bool, typer.Option("--all", help="Every finished session.")] = False,
    recompute: Annotated[bool, typer.Option("--recompute", help="Recompute stored features.")] = False,
    db: DbOption = None,
) -> None:
    """Compute (if needed), store and show session features; see docs/features.md."""
    from fervideo.features import feature_definition, store_session_features

    factory, ids = resolve_sessions(db, session, all_sessions)
    if session is not None:
        row = store_session_features(factory, session, recompute=recompute)
        table = Table("feature", "value", "meaning", title=f"session {session} features", title_justify="left")
        for name, value in row.values.items():
            definition = feature_definition(name)
            table.add_row(name, "-" if value is None else f"{value:.4g}", shown(definition.definition) if definition else "")
        console.print(table)
        status = "reliable" if row.reliable else "[yellow]unreliable[/yellow]: " + shown("; ".join(row.reliability_notes))
        console.print(f"session {session}: {status}")
        return
    unreliable: list[str] = []
    for session_id in track(ids, description="features", console=err_console, transient=True,
                            disable=not err_console.is_interactive):
        row = store_session_features(factory, session_id, recompute=recompute)
        if not row.reliable:
            unreliable.append(f"session {session_id}: {'; '.join(row.reliability_notes)}")
    console.print(f"features stored for {len(ids)} session(s); {len(unreliable)} unreliable"
                  + (":" if unreliable else ""), highlight=False)
    for line in unreliable:  # which ones and why: a cohort analysis must not take them at face value
        console.print(f"  [yellow]{shown(line)}[/yellow]", highlight=False)
