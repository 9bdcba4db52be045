"""`fervideo dashboard`: start the Streamlit clinician dashboard; `add-user` / `remove-user` manage logins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from fervideo.cli.app import DbOption, app, console, err_console
from fervideo.cli.arguments import shown
from fervideo.dashboard_auth import USERS_ENV
from fervideo.errors import NotFoundError

APP_SCRIPT = Path(__file__).resolve().parents[2] / "apps" / "dashboard" / "app.py"

dashboard_app = typer.Typer(
    help="The clinician dashboard (Streamlit). Without a subcommand: start it.",
    invoke_without_command=True, no_args_is_help=False,
)
app.add_typer(dashboard_app, name="dashboard")

UsersOption = Annotated[
    Path | None,
    typer.Option("--users", envvar=USERS_ENV, help="Credentials file [default: ~/.config/fervideo/dashboard_users.json]"),
]


def _database_url(db: str | None) -> str:
    """The URL the app will open; a SQLite file must already exist (the dashboard never creates one)."""
    from sqlalchemy.engine import make_url

    from fervideo.errors import DatabaseError
    from fervideo.store import default_database_url

    url = db or default_database_url()
    url = url if "://" in url else f"sqlite:///{Path(url).expanduser().resolve()}"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).expanduser().exists():
            raise DatabaseError(f"no database at {parsed.database}; process a video first or pass --db")
    return url


def streamlit_command(address: str, port: int) -> list[str]:
    """`streamlit run` with every option that keeps the server local-first, quiet and offline."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.address", address, "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none", "--server.runOnSave", "false",
        "--server.enableXsrfProtection", "true",
        "--browser.gatherUsageStats", "false",  # no telemetry leaves a clinical machine
        "--client.showErrorDetails", "none",  # tracebacks can carry data values; they go to the server log only
        "--client.toolbarMode", "viewer",
        "--global.developmentMode", "false",
    ]


@dashboard_app.callback()
def dashboard(
    ctx: typer.Context,
    db: DbOption = None,
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8501,
    address: Annotated[str, typer.Option(help="Address to listen on; anything but loopback needs a login configured.")] = "127.0.0.1",
    users: UsersOption = None,
) -> None:
    """Start the clinician dashboard (streamlit run apps/dashboard/app.py) over the same database."""
    if ctx.invoked_subcommand is not None:
        return
    import importlib.util

    from streamlit import config as streamlit_config

    from fervideo.dashboard_auth import (
        AuthConfigError,
        check_listen_allowed,
        is_loopback,
        read_streamlit_secrets,
        resolve_auth,
    )

    secrets = read_streamlit_secrets(list(streamlit_config.get_option("secrets.files") or []))
    setup = resolve_auth(secrets.get("auth"), users)
    check_listen_allowed(address, setup)
    if setup.mode == "oidc" and importlib.util.find_spec("authlib") is None:
        raise AuthConfigError("OIDC login is configured but Authlib is not installed: pip install 'Authlib>=1.3.2'")
    url = _database_url(db)
    if not is_loopback(address):
        err_console.print("[bold yellow]Serving beyond this machine: put it behind HTTPS (a reverse proxy, or "
                          "server.sslCertFile/sslKeyFile) so that logins and data are encrypted.[/bold yellow]")
    login = {"none": "no login (loopback only)", "password": f"password login ({setup.users_path})",
             "oidc": "OIDC login (st.login)"}[setup.mode]
    console.print(f"fervideo dashboard on http://{shown(address)}:{port}  ·  {shown(login)}", highlight=False)
    environment = os.environ | {"FERVIDEO_DB": url, USERS_ENV: str(setup.users_path)}
    raise typer.Exit(run_server(streamlit_command(address, port), env=environment))


STOP_GRACE_S = 10.0


def run_server(command: list[str], env: dict[str, str]) -> int:
    """Run the Streamlit server until it exits, or until this process is stopped (Ctrl-C, SIGTERM): then
    stop the server too, politely first (SIGTERM, up to STOP_GRACE_S), so that no orphan keeps serving
    clinical data on the port after `fervideo dashboard` has gone."""
    server = subprocess.Popen(command, env=env)
    try:
        return server.wait()
    except BaseException:  # KeyboardInterrupt, and SIGTERM raised as fervideo.cli.Terminated
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=STOP_GRACE_S)
            except BaseException:  # it did not stop in time, or a second Ctrl-C / kill: no more waiting
                server.kill()
                server.wait()
        raise


@dashboard_app.command("add-user")
def add_user_command(
    name: Annotated[str, typer.Argument(help="Login name (letters, digits, . _ @ -).")],
    users: UsersOption = None,
) -> None:
    """Add a dashboard login, or set a new password for an existing one (prompts; never an argument)."""
    from fervideo.dashboard_auth import add_user

    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    path = add_user(name, password, users)
    console.print(f"saved login {shown(repr(name))} in {shown(path)} (salted scrypt hash, file mode 600)",
                  highlight=False)


@dashboard_app.command("remove-user")
def remove_user_command(name: str, users: UsersOption = None) -> None:
    """Remove a dashboard login."""
    from fervideo.dashboard_auth import remove_user

    if not remove_user(name, users):
        raise NotFoundError(f"no login {name!r}; nothing removed")
    console.print(f"removed login {shown(repr(name))}", highlight=False)
