"""Projects, members, API keys and scopes (what Hopsworks puts in front of TF Serving).

State lives in a SQL database through SQLAlchemy: by default the sqlite file
``<project_dir>/serving/auth.db`` (WAL journal, busy timeout, so several server
workers and CLI calls may use it at once); any SQLAlchemy URL works.

* A **project** owns servings; its **members** have a role: ``owner`` or
  ``data_scientist``.
* An **API key** belongs to one member of one project and carries scopes
  (:data:`SCOPES`). A key looks like ``wb_<prefix>_<secret>``; only the prefix
  and a salted :func:`hashlib.scrypt` hash are stored, so the key is shown once,
  when it is created. Keys are listed by prefix and revoked by prefix.
* :meth:`AuthStore.authenticate` answers a :class:`Principal` or raises
  :class:`~workbench.serving.errors.AuthError` with status 401 (missing, unknown
  or revoked key) or 403 (a key of another project, a missing scope).

Roles bound the scopes a key may hold (:data:`ROLE_SCOPES`): an owner's key may hold
every scope, a data scientist's ``serving:infer`` and ``processes:execute``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError

from workbench.serving.errors import AuthError, BadRequest, NotFound

__all__ = [
    "ROLES",
    "ROLE_SCOPES",
    "SCOPES",
    "AuthStore",
    "KeyInfo",
    "Principal",
    "api_key_from_headers",
    "default_auth_url",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Every scope a key may carry.
SCOPES: tuple[str, ...] = ("serving:infer", "serving:admin", "processes:execute")
#: Roles of project members.
ROLES: tuple[str, ...] = ("owner", "data_scientist")
#: The scopes a member of each role may hold.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "owner": frozenset(SCOPES),
    "data_scientist": frozenset({"serving:infer", "processes:execute"}),
}

_PROJECT = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
_KEY = re.compile(r"^wb_([0-9a-f]{12})_([A-Za-z0-9_-]{20,128})$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
_CACHE_SIZE = 10_000

_meta = sa.MetaData()
projects_table = sa.Table(
    "projects",
    _meta,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(128), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)
members_table = sa.Table(
    "members",
    _meta,
    sa.Column("project", sa.String(64), sa.ForeignKey("projects.name"), primary_key=True),
    sa.Column("user", sa.String(128), primary_key=True),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("added_at", sa.String(40), nullable=False),
)
keys_table = sa.Table(
    "api_keys",
    _meta,
    sa.Column("prefix", sa.String(16), primary_key=True),
    sa.Column("project", sa.String(64), sa.ForeignKey("projects.name"), nullable=False, index=True),
    sa.Column("user", sa.String(128), nullable=False),
    sa.Column("scopes", sa.String(256), nullable=False),
    sa.Column("salt", sa.LargeBinary(32), nullable=False),
    sa.Column("hash", sa.LargeBinary(64), nullable=False),
    sa.Column("name", sa.String(128), nullable=False, default=""),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("revoked_at", sa.String(40), nullable=True),
)


@dataclass(frozen=True)
class Principal:
    """Who made a request: the key's project, user, role, scopes and prefix."""

    project: str
    user: str
    role: str
    scopes: tuple[str, ...]
    key_prefix: str


@dataclass(frozen=True)
class KeyInfo:
    """What is stored about a key (never the key itself)."""

    prefix: str
    project: str
    user: str
    scopes: tuple[str, ...]
    name: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        """True while the key is not revoked."""
        return self.revoked_at is None


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def default_auth_url(project: Any = None) -> str:
    """``sqlite:///<project_dir>/serving/auth.db`` of ``project`` (a directory, Settings or None)."""
    from workbench.featurestore._common import project_settings

    folder = Path(project_settings(project).project_dir).absolute() / "serving"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'auth.db'}"


def _check_project(name: Any) -> str:
    if not isinstance(name, str) or not _PROJECT.match(name):
        raise BadRequest(
            f"project name must be lower-case letters, digits, '_' or '-', starting with a letter "
            f"(at most 63 characters), got {name!r}"
        )
    return name


def _check_user(name: Any) -> str:
    if not isinstance(name, str) or not _USER.match(name):
        raise BadRequest(
            f"user name must be letters, digits, '_', '.', '@' or '-' (at most 128 characters), got {name!r}"
        )
    return name


def _check_role(role: Any) -> str:
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return str(role)


def _check_scopes(scopes: Any) -> tuple[str, ...]:
    if isinstance(scopes, str):
        scopes = [s for s in re.split(r"[,\s]+", scopes) if s]
    if not isinstance(scopes, Iterable):
        raise BadRequest(f"scopes must be a list of {', '.join(SCOPES)}, got {scopes!r}")
    out = []
    for s in scopes:
        if s not in SCOPES:
            raise BadRequest(f"unknown scope {s!r}: expected one of {', '.join(SCOPES)}")
        if s not in out:
            out.append(s)
    if not out:
        raise BadRequest(f"a key needs at least one scope out of {', '.join(SCOPES)}")
    return tuple(out)


def _hash(key: str, salt: bytes) -> bytes:
    return hashlib.scrypt(key.encode(), salt=salt, **_SCRYPT)


def api_key_from_headers(headers: Mapping[str, str] | Any) -> str | None:
    """The API key of a request's headers, or None.

    Accepts ``Authorization: ApiKey <key>``, ``Authorization: Bearer <key>`` and
    ``X-API-Key: <key>`` (header names in any case).
    """
    items = headers.items() if hasattr(headers, "items") else headers
    auth = None
    xkey = None
    for k, v in items:
        lk = str(k).lower()
        if lk == "authorization":
            auth = str(v)
        elif lk == "x-api-key":
            xkey = str(v)
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() in ("apikey", "bearer") and value.strip():
            return value.strip()
    if xkey and xkey.strip():
        return xkey.strip()
    return None


def _retry(func: Callable[[], T], *, what: str, attempts: int = 40) -> T:
    """Call ``func``, retrying while sqlite reports a lock."""
    for attempt in range(attempts - 1):
        try:
            return func()
        except OperationalError as exc:
            text = str(exc).lower()
            if "locked" not in text and "busy" not in text and "already exists" not in text:
                raise
            log.debug("%s: sqlite busy (%s), retry %d", what, exc, attempt + 1)
            time.sleep(min(0.05 * (attempt + 1), 0.5))
    return func()


class AuthStore:
    """Projects, members and API keys in a SQL database.

    Parameters
    ----------
    url_or_path
        A SQLAlchemy URL (``sqlite:///…``, ``postgresql://…``), a path of a sqlite
        file, or None for ``<project_dir>/serving/auth.db``.
    """

    def __init__(self, url_or_path: str | Path | None = None) -> None:
        if url_or_path is None:
            url = default_auth_url()
        elif isinstance(url_or_path, Path) or "://" not in str(url_or_path):
            path = Path(url_or_path).absolute()
            path.parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{path}"
        else:
            url = str(url_or_path)
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            self._engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise BadRequest(f"auth database URL {url!r} is not usable: {exc}") from exc
        if url.startswith("sqlite"):

            @sa.event.listens_for(self._engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        _retry(lambda: _meta.create_all(self._engine), what="creating the auth tables")
        self._verified: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    # -- projects and members -------------------------------------------------------------
    def create_project(self, name: str, *, owner: str) -> str:
        """Create project ``name`` owned by ``owner``; returns the owner's API key (all scopes), shown once."""
        _check_project(name)
        _check_user(owner)

        def run() -> None:
            with self._engine.begin() as conn:
                conn.execute(projects_table.insert().values(name=name, owner=owner, created_at=_now()))
                conn.execute(members_table.insert().values(project=name, user=owner, role="owner",
                                                           added_at=_now()))

        try:
            _retry(run, what=f"creating project {name!r}")
        except IntegrityError as exc:
            raise BadRequest(f"project {name!r} exists already", status=409) from exc
        return self.create_key(name, owner, scopes=SCOPES, name="owner key")

    def list_projects(self) -> list[dict[str, str]]:
        """Every project: name, owner, created_at."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(projects_table).order_by(projects_table.c.name)).mappings().all()
        return [dict(r) for r in rows]

    def _require_project(self, conn: Any, project: str) -> None:
        if conn.execute(sa.select(projects_table.c.name).where(projects_table.c.name == project)).first() is None:
            raise NotFound(f"project {project!r} does not exist")

    def add_member(self, project: str, user: str, *, role: str) -> None:
        """Add ``user`` to ``project`` with ``role`` (``owner`` or ``data_scientist``), or change its role."""
        _check_project(project)
        _check_user(user)
        _check_role(role)

        def run() -> None:
            with self._engine.begin() as conn:
                self._require_project(conn, project)
                found = conn.execute(
                    sa.select(members_table.c.role).where(
                        members_table.c.project == project, members_table.c.user == user
                    )
                ).first()
                if found is None:
                    conn.execute(members_table.insert().values(project=project, user=user, role=role,
                                                               added_at=_now()))
                else:
                    conn.execute(
                        members_table.update()
                        .where(members_table.c.project == project, members_table.c.user == user)
                        .values(role=role)
                    )

        _retry(run, what=f"adding {user!r} to {project!r}")

    def remove_member(self, project: str, user: str) -> None:
        """Remove ``user`` from ``project`` and revoke the user's keys of that project."""
        _check_project(project)
        _check_user(user)

        def run() -> None:
            with self._engine.begin() as conn:
                gone = conn.execute(
                    members_table.delete().where(members_table.c.project == project, members_table.c.user == user)
                ).rowcount
                if not gone:
                    raise NotFound(f"user {user!r} is not a member of project {project!r}")
                conn.execute(
                    keys_table.update()
                    .where(keys_table.c.project == project, keys_table.c.user == user,
                           keys_table.c.revoked_at.is_(None))
                    .values(revoked_at=_now())
                )

        _retry(run, what=f"removing {user!r} from {project!r}")

    def members(self, project: str) -> dict[str, str]:
        """``{user: role}`` of ``project``."""
        _check_project(project)
        with self._engine.connect() as conn:
            self._require_project(conn, project)
            rows = conn.execute(
                sa.select(members_table.c.user, members_table.c.role).where(members_table.c.project == project)
            ).all()
        return {u: r for u, r in rows}

    # -- keys -------------------------------------------------------------------------------
    def create_key(self, project: str, user: str, *, scopes: Iterable[str] | str = ("serving:infer",),
                   name: str = "") -> str:
        """A new API key of ``user`` in ``project`` with ``scopes``; the key is returned once, never stored.

        Raises
        ------
        NotFound
            The project does not exist.
        AuthError
            ``user`` is not a member (403), or the role may not hold a scope (403).
        """
        _check_project(project)
        _check_user(user)
        wanted = _check_scopes(scopes)
        if not isinstance(name, str) or len(name) > 128:
            raise BadRequest(f"key name must be a string of at most 128 characters, got {name!r}")
        salt = secrets.token_bytes(16)
        prefix = secrets.token_hex(6)
        key = f"wb_{prefix}_{secrets.token_urlsafe(32)}"
        digest = _hash(key, salt)

        def run() -> None:
            with self._engine.begin() as conn:
                self._require_project(conn, project)
                role = conn.execute(
                    sa.select(members_table.c.role).where(
                        members_table.c.project == project, members_table.c.user == user
                    )
                ).scalar()
                if role is None:
                    raise AuthError(403, f"user {user!r} is not a member of project {project!r}; add it first")
                denied = [s for s in wanted if s not in ROLE_SCOPES[role]]
                if denied:
                    raise AuthError(403, f"a {role} of {project!r} may not hold scope(s) {', '.join(denied)}")
                conn.execute(
                    keys_table.insert().values(
                        prefix=f"wb_{prefix}", project=project, user=user, scopes=",".join(wanted), salt=salt,
                        hash=digest, name=name, created_at=_now(), revoked_at=None,
                    )
                )

        _retry(run, what="creating a key")
        log.info("created key wb_%s for %s in %s (%s)", prefix, user, project, ",".join(wanted))
        return key

    @staticmethod
    def _info(row: Mapping[str, Any]) -> KeyInfo:
        return KeyInfo(
            prefix=row["prefix"], project=row["project"], user=row["user"],
            scopes=tuple(s for s in row["scopes"].split(",") if s), name=row["name"] or "",
            created_at=row["created_at"], revoked_at=row["revoked_at"],
        )

    def list_keys(self, project: str | None = None, user: str | None = None, *,
                  include_revoked: bool = True) -> list[KeyInfo]:
        """Keys (prefix, owner, scopes, dates; never the secret), optionally of one project or user."""
        q = sa.select(keys_table).order_by(keys_table.c.created_at, keys_table.c.prefix)
        if project is not None:
            q = q.where(keys_table.c.project == _check_project(project))
        if user is not None:
            q = q.where(keys_table.c.user == _check_user(user))
        if not include_revoked:
            q = q.where(keys_table.c.revoked_at.is_(None))
        with self._engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [self._info(r) for r in rows]

    def revoke_key(self, prefix: str) -> KeyInfo:
        """Revoke the key whose prefix is ``prefix`` (``wb_`` + 12 hex digits); its next use gets 401."""
        if not isinstance(prefix, str) or not re.match(r"^wb_[0-9a-f]{12}$", prefix):
            raise BadRequest(f"key prefix must look like wb_0123456789ab, got {prefix!r}")

        def run() -> None:
            with self._engine.begin() as conn:
                done = conn.execute(
                    keys_table.update().where(keys_table.c.prefix == prefix, keys_table.c.revoked_at.is_(None))
                    .values(revoked_at=_now())
                ).rowcount
                if not done:
                    exists = conn.execute(sa.select(keys_table.c.prefix).where(keys_table.c.prefix == prefix)).first()
                    if exists is None:
                        raise NotFound(f"no key has prefix {prefix!r}")

        _retry(run, what="revoking a key")
        with self._lock:
            for digest in [d for d, p in self._verified.items() if p == prefix]:
                del self._verified[digest]
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(keys_table).where(keys_table.c.prefix == prefix)).mappings().one()
        return self._info(row)

    # -- authentication ---------------------------------------------------------------------
    def authenticate(self, api_key: str | None, *, project: str | None = None,
                     scope: str = "serving:infer") -> Principal:
        """Check ``api_key`` for ``scope`` in ``project`` (None: any project of the key).

        The scrypt check runs once per key and process; later calls compare a SHA-256
        of the key held in memory, and every call reads the key's row, so a revocation
        takes effect on the next request.

        Raises
        ------
        AuthError
            401: missing, malformed, unknown or revoked key; 403: the key belongs to
            another project, lacks ``scope``, or its user left the project.
        """
        if scope not in SCOPES:
            raise BadRequest(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        if not api_key:
            raise AuthError(401, "missing API key: send 'Authorization: ApiKey <key>'")
        m = _KEY.match(api_key) if isinstance(api_key, str) else None
        if m is None:
            raise AuthError(401, "invalid API key: expected a key like wb_<prefix>_<secret>")
        prefix = f"wb_{m.group(1)}"
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(keys_table, members_table.c.role)
                .select_from(keys_table.outerjoin(
                    members_table,
                    sa.and_(members_table.c.project == keys_table.c.project, members_table.c.user == keys_table.c.user),
                ))
                .where(keys_table.c.prefix == prefix)
            ).mappings().first()
        if row is None:
            raise AuthError(401, f"unknown API key {prefix}")
        digest = hashlib.sha256(api_key.encode()).digest()
        with self._lock:
            cached = self._verified.get(digest)
        if cached != prefix:
            if not hmac.compare_digest(_hash(api_key, row["salt"]), row["hash"]):
                raise AuthError(401, f"unknown API key {prefix}")
            with self._lock:
                self._verified[digest] = prefix
                while len(self._verified) > _CACHE_SIZE:
                    self._verified.popitem(last=False)
        if row["revoked_at"] is not None:
            raise AuthError(401, f"API key {prefix} was revoked at {row['revoked_at']}")
        if project is not None and row["project"] != project:
            raise AuthError(403, f"API key {prefix} belongs to project {row['project']!r}, not {project!r}")
        role = row["role"]
        if role is None:
            raise AuthError(403, f"user {row['user']!r} is no longer a member of project {row['project']!r}")
        scopes = tuple(s for s in row["scopes"].split(",") if s)
        if scope not in scopes or scope not in ROLE_SCOPES.get(role, frozenset()):
            raise AuthError(403, f"API key {prefix} lacks scope {scope!r} (it has {', '.join(scopes)})")
        return Principal(project=row["project"], user=row["user"], role=role, scopes=scopes, key_prefix=prefix)
