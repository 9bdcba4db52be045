"""The door of the dashboard: nothing but a refusal or a login form until the visitor may see data.

Same rules as the CLI (fervideo.dashboard_auth), applied again inside the app because anyone can run
`streamlit run apps/dashboard/app.py --server.address 0.0.0.0` without going through the CLI.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from apps.dashboard import data
from fervideo.dashboard_auth import (
    LOCAL_USER,
    AuthSetup,
    check_credentials,
    is_loopback,
    load_users,
    oidc_provider,
    resolve_auth,
)

USER_KEY = "fervideo_user"
FAILED_LOGIN_DELAY_S = 1.0  # slows password guessing from one browser session


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def secrets_auth_section() -> dict | None:
    """The [auth] section of Streamlit's secrets, or None when there are no secrets at all."""
    try:
        section = st.secrets.get("auth")
    except FileNotFoundError:  # Streamlit raises a FileNotFoundError subclass when no secrets file exists
        return None
    return _plain(section) if section is not None else None


def _refuse(address: str | None) -> None:
    st.title("fervideo dashboard")
    st.error(
        f"Refusing to serve on {address or 'all interfaces'} without authentication. Start it with "
        "`fervideo dashboard` (listens on 127.0.0.1), or configure a login: `fervideo dashboard add-user NAME` "
        "or OIDC ([auth] in .streamlit/secrets.toml)."
    )
    st.stop()


def _oidc_user(setup: AuthSetup, auth: dict) -> str:
    if not st.user.is_logged_in:
        st.title("fervideo dashboard")
        st.write("Sign in to review sessions.")
        st.button("Log in", on_click=st.login, args=(oidc_provider(auth),), type="primary")
        st.stop()
    return str(st.user.get("email") or st.user.get("sub") or "oidc-user")


def _password_user(db_url: str, setup: AuthSetup) -> str:
    if st.session_state.get(USER_KEY):
        return st.session_state[USER_KEY]
    st.title("fervideo dashboard")
    with st.form("login"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        users = load_users(setup.users_path)
        if check_credentials(username, password, users):
            st.session_state[USER_KEY] = username
            data.record_audit(db_url, username, "login")
            st.rerun()
        # A mistyped password sometimes lands in the username box: log a name only if it is a user's.
        data.record_audit(db_url, username if username in users else "unknown", "login_failed")
        time.sleep(FAILED_LOGIN_DELAY_S)
        st.error("Wrong username or password.")
    st.stop()


def require_user(db_url: str) -> tuple[str, str]:
    """(user name for the audit, auth mode); stops the script until the visitor is allowed in."""
    auth = secrets_auth_section()
    setup = resolve_auth(auth)
    if not setup.configured:
        address = st.get_option("server.address")
        if not is_loopback(address):
            _refuse(address)
        return LOCAL_USER, setup.mode
    if setup.mode == "oidc":
        return _oidc_user(setup, auth or {}), setup.mode
    return _password_user(db_url, setup), setup.mode


def logout(mode: str) -> None:
    if mode == "oidc":
        st.logout()
    else:
        st.session_state.pop(USER_KEY, None)
