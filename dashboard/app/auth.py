"""Who may see what: users with hashed passwords, expiring sessions, CSRF tokens, site scoping.

Why this shape:
- Passwords are hashed with the standard library's scrypt (memory-hard, per-user random salt), so
  no native dependency is needed on a home gateway; the users file never holds a password.
- Sessions live in memory and expire (idle and absolute limits): a restarted dashboard asks
  everyone to log in again, which is acceptable for a clinic tool and leaves nothing to steal on disk.
- Every state-changing request must carry the session's CSRF token in the ``X-CSRF-Token`` header
  (the pages read it from ``/api/me``); a cross-site form cannot set that header.
- A clinician is bound to one site and sees only that site's patients; ``*`` (an administrator)
  sees every site. On loopback without a users file the dashboard runs as one local user who sees
  everything: the person at the gateway's own keyboard.
- Usernames are pseudonymous staff identifiers too; nothing here is logged but the username.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LOCAL_USER",
    "AuthError",
    "Session",
    "SessionStore",
    "User",
    "UserStore",
    "hash_password",
    "verify_password",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# scrypt cost: n=2**14, r=8 uses 16 MiB and ~50 ms per check on a small ARM board: slow enough to
# make guessing expensive, fast enough for a login.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class AuthError(Exception):
    """A users file or user entry is invalid (one line naming the file and the key)."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt_hex$hash_hex`` of ``password`` with a fresh 16-byte salt."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=64 * 1024 * 1024
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt_hex, hash_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt_hex),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), hash_hex)


@dataclass(frozen=True, slots=True)
class User:
    """A dashboard user: ``site`` is the one site they may see, or ``*`` for all sites."""

    username: str
    site: str
    password_hash: str = ""

    def may_see(self, site: str) -> bool:
        return self.site == "*" or self.site == site


#: The implicit user of a dashboard bound to loopback without a users file.
LOCAL_USER = User(username="local", site="*")


class UserStore:
    """The users file: JSON ``{"users": {name: {"site": ..., "password": "scrypt$..."}}}``.

    Written atomically (temp file + rename) with mode 0600; read at start and on every login, so
    ``neurospasm dashboard adduser`` takes effect without a restart.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # (JSON and UTF-8 decoding errors are ValueErrors)
            raise AuthError(f"{self.path}: not a readable users file ({exc})") from exc
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict):
            raise AuthError(f"{self.path}: users: missing or not a table of users")
        for name, entry in users.items():
            if not isinstance(entry, dict) or not {"site", "password"} <= entry.keys():
                raise AuthError(f"{self.path}: users.{name}: needs 'site' and 'password'")
        return users

    def users(self) -> list[User]:
        return [User(n, e["site"], e["password"]) for n, e in sorted(self._load().items())]

    def get(self, username: str) -> User | None:
        entry = self._load().get(username)
        return User(username, entry["site"], entry["password"]) if entry else None

    def add(self, username: str, password: str, site: str) -> User:
        """Create or replace a user (a new password gets a new salt)."""
        if not _NAME.match(username):
            raise AuthError(f"{self.path}: username {username!r}: use letters, digits, '_', '.', '-'")
        if site != "*" and not _NAME.match(site):
            raise AuthError(f"{self.path}: site {site!r}: a site pseudonym or '*' for all sites")
        if len(password) < 8:
            raise AuthError(f"{self.path}: password for {username}: at least 8 characters")
        with self._lock:
            users = self._load()
            users[username] = {"site": site, "password": hash_password(password)}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump({"users": users}, fh, indent=1, sort_keys=True)
                fh.write("\n")
            os.replace(tmp, self.path)
        return User(username, site, users[username]["password"])

    def authenticate(self, username: str, password: str) -> User | None:
        user = self.get(username)
        if user is None:
            # Same work for an unknown name, so timing does not tell which names exist.
            verify_password(password, hash_password("x", salt=b"0" * 16))
            return None
        return user if verify_password(password, user.password_hash) else None


@dataclass(slots=True)
class Session:
    token: str
    user: User
    csrf: str
    created: float
    last_seen: float


class SessionStore:
    """In-memory sessions with an idle timeout and an absolute lifetime (monotonic clock)."""

    def __init__(self, idle_s: float = 30 * 60, max_age_s: float = 12 * 3600) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: User) -> Session:
        now = time.monotonic()
        s = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(24), now, now)
        with self._lock:
            self._expire(now)
            self._sessions[s.token] = s
        return s

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            s = self._sessions.get(token)
            if s is not None:
                s.last_seen = now
            return s

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)

    def _expire(self, now: float) -> None:
        dead = [
            t
            for t, s in self._sessions.items()
            if now - s.last_seen > self.idle_s or now - s.created > self.max_age_s
        ]
        for t in dead:
            del self._sessions[t]
