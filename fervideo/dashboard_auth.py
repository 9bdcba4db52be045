"""Who may open the dashboard: loopback checks, salted password hashes and OIDC detection.

Streamlit-free on purpose: the CLI decides whether it may start the server from these functions, and
the app applies the same rules again (someone can always run `streamlit run` by hand).

Rules
- The server listens on 127.0.0.1 unless told otherwise, and refuses any address that is not
  loopback unless authentication is configured.
- Authentication is either Streamlit's OIDC (`st.login`, an `[auth]` section in a Streamlit
  secrets file) or a fervideo credentials file: usernames with a per-user random salt and an
  scrypt hash. Passwords are never stored, logged or compared in plain text.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from fervideo.errors import FervideoError, InvalidArgumentError

USERS_ENV = "FERVIDEO_DASHBOARD_USERS"
LOCAL_USER = "local"  # the audit name when the dashboard runs on loopback without authentication
# scrypt at n=2**14, r=8 costs ~16 MiB and ~50 ms per check: slow for guessing, fine for a login.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32
MIN_PASSWORD_LENGTH = 10
_USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")


class AuthConfigError(FervideoError):
    """The dashboard would be reachable by others without authentication, or auth is misconfigured."""

    exit_code = 2


# ------------------------------------------------------------------------------------------ addresses
def is_loopback(address: str | None) -> bool:
    """True only for addresses that other machines cannot reach. None/"" means all interfaces."""
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


# ------------------------------------------------------------------------------------------ passwords
def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$n$r$p$salt$hash` (base64), with a fresh 16-byte salt unless one is given."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_DKLEN
    )
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time comparison of the scrypt of `password` against a stored hash string."""
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        digest = hashlib.scrypt(
            password.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


@functools.cache
def _dummy_hash() -> str:
    """A fixed hash to check against when the username is unknown, so that the time taken does not
    tell an attacker which usernames exist. Made on first use: scrypt takes ~50 ms, which every
    `fervideo` command would otherwise pay at import."""
    return hash_password("not-a-real-password", salt=b"\0" * 16)


# ---------------------------------------------------------------------------------- credentials file
def default_users_path() -> Path:
    if os.environ.get(USERS_ENV):
        return Path(os.environ[USERS_ENV]).expanduser()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config_home / "fervideo" / "dashboard_users.json"


def load_users(path: Path | None = None) -> dict[str, str]:
    """username -> stored hash; {} when the file does not exist."""
    path = path or default_users_path()
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        users = data["users"]
        if not isinstance(users, dict) or not all(isinstance(v, str) for v in users.values()):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise AuthConfigError(f"{path} is not a fervideo dashboard credentials file") from None
    return users


def save_users(users: dict[str, str], path: Path | None = None) -> Path:
    """Write the credentials file readable by its owner only (it holds hashes, still worth guarding)."""
    path = path or default_users_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"format": "fervideo-dashboard-users/1", "users": users}, handle, indent=1, sort_keys=True)
    os.replace(temporary, path)
    return path


def add_user(username: str, password: str, path: Path | None = None) -> Path:
    if not username or not set(username) <= _USERNAME_CHARS or len(username) > 64:
        raise InvalidArgumentError("a username is 1-64 letters, digits or . _ @ -")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgumentError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    users = load_users(path)
    users[username] = hash_password(password)
    return save_users(users, path)


def remove_user(username: str, path: Path | None = None) -> bool:
    users = load_users(path)
    if users.pop(username, None) is None:
        return False
    save_users(users, path)
    return True


def check_credentials(username: str, password: str, users: dict[str, str]) -> bool:
    stored = users.get(username)
    ok = verify_password(password, stored or _dummy_hash())
    return ok and stored is not None


# --------------------------------------------------------------------------------------- login cookie
# A password login survives a reload through a cookie holding a signed, expiring token (OIDC logins use
# Streamlit's own signed cookie). The token names the user, its expiry and a fingerprint of the user's
# stored hash, signed with HMAC-SHA256 under a random key kept next to the credentials file (mode 600):
# removing the user, changing the password or deleting the key file revokes every token at once.
LOGIN_COOKIE = "fervideo_login"
LOGIN_TTL_S = 8 * 3600  # one working day
SECRET_SUFFIX = ".secret"


def login_secret(users_path: Path) -> bytes:
    """The signing key for login tokens, created (32 random bytes, mode 600) on first use."""
    path = users_path.with_name(users_path.name + SECRET_SUFFIX)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise AuthConfigError(f"{path} is not a fervideo login key; delete it to make a new one") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    return key


def _fingerprint(stored_hash: str) -> str:
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:16]


def _sign(payload: bytes, key: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, payload, hashlib.sha256).digest()).decode().rstrip("=")


def issue_login_token(username: str, users: dict[str, str], key: bytes, now: float,
                      ttl_s: float = LOGIN_TTL_S) -> str:
    """`payload.signature`, URL-safe base64, for a user who has just logged in."""
    payload = json.dumps([username, int(now + ttl_s), _fingerprint(users[username])]).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _sign(payload, key)


def verify_login_token(token: str | None, users: dict[str, str], key: bytes, now: float) -> str | None:
    """The user a token vouches for, or None when it is missing, forged, expired or revoked."""
    try:
        encoded, signature = (token or "").split(".")
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        if not hmac.compare_digest(signature, _sign(payload, key)):
            return None
        username, expires, fingerprint = json.loads(payload)
    except (ValueError, TypeError):
        return None
    stored = users.get(username) if isinstance(username, str) else None
    if stored is None or not isinstance(expires, int) or now >= expires or fingerprint != _fingerprint(stored):
        return None
    return username


# ----------------------------------------------------------------------------------------------- OIDC
def oidc_section_is_complete(auth: dict | None) -> bool:
    """An `[auth]` section st.login can use: redirect_uri, cookie_secret and one provider's client."""
    if not isinstance(auth, dict) or not auth.get("redirect_uri") or not auth.get("cookie_secret"):
        return False
    providers = [auth] + [value for value in auth.values() if isinstance(value, dict)]
    return any(p.get("client_id") and p.get("server_metadata_url") for p in providers)


def oidc_provider(auth: dict) -> str | None:
    """The provider name for st.login: None for a top-level client, else the first named section."""
    if auth.get("client_id"):
        return None
    return next((name for name, value in auth.items() if isinstance(value, dict) and value.get("client_id")), None)


def read_streamlit_secrets(files: list[str]) -> dict:
    """Merge Streamlit secrets files the way Streamlit does (later files win), reading only TOML files."""
    merged: dict = {}
    for name in files:
        path = Path(name).expanduser()
        if path.is_file():
            try:
                merged.update(tomllib.loads(path.read_text()))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise AuthConfigError(f"cannot read Streamlit secrets {path}: {exc}") from None
    return merged


@dataclass(frozen=True)
class AuthSetup:
    mode: str  # "oidc", "password" or "none"
    users_path: Path

    @property
    def configured(self) -> bool:
        return self.mode != "none"


def resolve_auth(secrets_auth: dict | None, users_path: Path | None = None) -> AuthSetup:
    """OIDC when a complete [auth] section exists, else password when users exist, else none."""
    users_path = users_path or default_users_path()
    if oidc_section_is_complete(secrets_auth):
        return AuthSetup("oidc", users_path)
    if load_users(users_path):
        return AuthSetup("password", users_path)
    return AuthSetup("none", users_path)


def check_listen_allowed(address: str | None, setup: AuthSetup) -> None:
    """Raise unless the address is loopback or authentication is configured."""
    if is_loopback(address) or setup.configured:
        return
    where = "all interfaces" if not address else address
    raise AuthConfigError(
        f"refusing to listen on {where} without authentication: run `fervideo dashboard add-user NAME` "
        "or configure OIDC (an auth section in .streamlit/secrets.toml), or use --address 127.0.0.1"
    )


__all__ = [
    "LOCAL_USER", "LOGIN_COOKIE", "LOGIN_TTL_S", "USERS_ENV", "issue_login_token", "login_secret",
    "verify_login_token", "AuthConfigError", "AuthSetup", "add_user", "check_credentials",
    "check_listen_allowed", "default_users_path", "hash_password", "is_loopback", "load_users",
    "oidc_provider", "oidc_section_is_complete", "read_streamlit_secrets", "remove_user", "resolve_auth",
    "save_users", "verify_password",
]
