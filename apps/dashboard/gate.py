"""The door of the dashboard: nothing but a refusal or a login form until the visitor may see data.

Same rules as the CLI (fervideo.dashboard_auth), applied again inside the app because anyone can run
`streamlit run apps/dashboard/app.py --server.address 0.0.0.0` without going through the CLI.
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

from apps.dashboard import data
from fervideo.dashboard_auth import (
    LOCAL_USER,
    LOGIN_COOKIE,
    LOGIN_TTL_S,
    AuthSetup,
    check_credentials,
    is_loopback,
    issue_login_token,
    load_users,
    login_secret,
    oidc_provider,
    resolve_auth,
    verify_login_token,
)

USER_KEY = "fervideo_user"
PENDING_COOKIE_KEY = "_fervideo_cookie_script"  # set by a login or logout, written on the next run
LOGGED_OUT_KEY = "_fervideo_logged_out"  # this browser session logged out: ignore the cookie it came with
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


def _request_cookie() -> str | None:
    """The login cookie the browser sent when it opened this session (a reload opens a new one)."""
    return st.context.cookies.get(LOGIN_COOKIE)


def _cookie_script(token: str, max_age_s: int) -> str:
    """A script that sets (or, with max_age_s 0, deletes) the login cookie on the dashboard's own page.

    Streamlit has no server-side Set-Cookie for apps, so a zero-height component does it; its iframe
    shares the app's origin. The token is URL-safe base64 and a dot, so it needs no quoting. SameSite=Strict
    keeps it off cross-site requests and Secure is added whenever the page is served over HTTPS.
    """
    return ("<script>const page = window.parent;"
            f"page.document.cookie = '{LOGIN_COOKIE}={token}; Path=/; Max-Age={max_age_s}; SameSite=Strict'"
            " + (page.location.protocol === 'https:' ? '; Secure' : '');</script>")


def write_pending_cookie() -> None:
    """Set or clear the login cookie when the last login or logout asked for it (runs once)."""
    script = st.session_state.pop(PENDING_COOKIE_KEY, None)
    if script:
        components.html(script, height=0)


def _password_user(db_url: str, setup: AuthSetup) -> str:
    if st.session_state.get(USER_KEY):
        return st.session_state[USER_KEY]
    users = load_users(setup.users_path)
    if not st.session_state.get(LOGGED_OUT_KEY):
        resumed = verify_login_token(_request_cookie(), users, login_secret(setup.users_path), time.time())
        if resumed:
            st.session_state[USER_KEY] = resumed
            data.record_audit(db_url, resumed, "login_resumed")
            return resumed
    write_pending_cookie()
    st.title("fervideo dashboard")
    with st.form("login"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        if check_credentials(username, password, users):
            st.session_state[USER_KEY] = username
            st.session_state.pop(LOGGED_OUT_KEY, None)
            token = issue_login_token(username, users, login_secret(setup.users_path), time.time())
            st.session_state[PENDING_COOKIE_KEY] = _cookie_script(token, LOGIN_TTL_S)
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
        st.session_state[LOGGED_OUT_KEY] = True
        st.session_state[PENDING_COOKIE_KEY] = _cookie_script("", 0)
