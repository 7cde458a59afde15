"""The embedded catalog store: one SQLite file, ``HOME/catalog.db``, safe for many processes.

Concurrency: the database runs in WAL mode (readers never block the writer); every write
is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two writers
serialise instead of deadlocking on a lock upgrade) and waits up to
:data:`BUSY_TIMEOUT_S` for the lock. A version number is allocated inside the same
transaction that inserts the entry, so concurrent registrations never share or skip a
version. Entries are immutable: triggers refuse UPDATE and DELETE.

Like every SQLite database, the file must sit on a local disk (or a filesystem with
working POSIX locks); object stores and most NFS setups do not qualify.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from shardforge.catalog.entry import Build
from shardforge.catalog.errors import RegistrationError
from shardforge.catalog.home import DB_FILE, resolve_home

BUSY_TIMEOUT_S = 60.0
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    build_id   TEXT    NOT NULL UNIQUE,
    created    TEXT    NOT NULL,
    registered TEXT    NOT NULL,
    pipeline   TEXT    NOT NULL,
    card_hash  TEXT,
    parent     TEXT,
    origin     TEXT,
    samples    INTEGER NOT NULL,
    entry      TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS builds_by_card ON builds (name, card_hash, origin);
CREATE TRIGGER IF NOT EXISTS builds_no_update BEFORE UPDATE ON builds
BEGIN SELECT RAISE(ABORT, 'catalog builds are immutable'); END;
CREATE TRIGGER IF NOT EXISTS builds_no_delete BEFORE DELETE ON builds
BEGIN SELECT RAISE(ABORT, 'catalog builds are immutable'); END;
"""


class Store:
    """The catalog database of one home. Reads of a catalog never written find it empty."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.home = resolve_home(home)
        self.path = self.home / DB_FILE

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return conn

    def _create(self) -> None:
        """Create the home, the database, WAL mode and the schema (idempotent, race-safe)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(self._connect()) as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
                return
            # Switching to WAL needs a moment with no other connection: retry while busy.
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(_SCHEMA):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        if not self.path.exists():
            yield None
            return
        with contextlib.closing(self._connect()) as conn:
            # A database another process is creating this instant has no schema yet.
            ready = conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION
            yield conn if ready else None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on error."""
        try:
            self._create()
            conn = self._connect()
        except sqlite3.Error as exc:
            raise RegistrationError(f"cannot open the catalog {self.path}: {exc}; check that "
                                    "the directory is writable and on a local disk") from exc
        with contextlib.closing(conn):
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise RegistrationError(
                    f"catalog {self.path} stayed locked for {BUSY_TIMEOUT_S:.0f} s ({exc}); "
                    "another process holds a write transaction: retry") from exc
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- writes ------------------------------------------------------------------------

    def insert(self, name: str, build_id: str,
               make: Callable[[int], Build]) -> tuple[Build, bool]:
        """Register the build ``make(version)`` of ``name`` unless ``build_id`` is present.

        Returns ``(build, created)``: the existing entry and False when a build with this
        id exists, else the new entry, with the next version of its name, and True.
        """
        with self._write() as conn:
            row = conn.execute("SELECT entry FROM builds WHERE build_id = ?",
                               (build_id,)).fetchone()
            if row:
                return _load(row[0]), False
            version = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM builds "
                                   "WHERE name = ?", (name,)).fetchone()[0]
            build = make(version)
            conn.execute(
                "INSERT INTO builds (name, version, build_id, created, registered, pipeline, "
                "card_hash, parent, origin, samples, entry) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (build.name, build.version, build.build_id, build.created, build.registered,
                 build.pipeline, build.card_hash, build.parent, build.origin, build.samples,
                 json.dumps(build.to_dict(), sort_keys=True)))
            return build, True

    # -- reads -------------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> Build | None:
        """The build ``name@vVERSION`` (latest when ``version`` is None), or None."""
        with self._read() as conn:
            if conn is None:
                return None
            if version is None:
                row = conn.execute("SELECT entry FROM builds WHERE name = ? "
                                   "ORDER BY version DESC LIMIT 1", (name,)).fetchone()
            else:
                row = conn.execute("SELECT entry FROM builds WHERE name = ? AND version = ?",
                                   (name, version)).fetchone()
        return _load(row[0]) if row else None

    def versions(self, name: str) -> list[int]:
        """The versions of ``name``, ascending."""
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute("SELECT version FROM builds WHERE name = ? ORDER BY version",
                                (name,)).fetchall()
        return [r[0] for r in rows]

    def names(self) -> list[str]:
        """Every dataset name with at least one build, sorted."""
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute("SELECT DISTINCT name FROM builds ORDER BY name").fetchall()
        return [r[0] for r in rows]

    def all(self, latest_only: bool = False) -> list[Build]:
        """Every build (or the latest of each name), sorted by name and version."""
        query = "SELECT entry FROM builds b"
        if latest_only:
            query += (" WHERE version = (SELECT MAX(version) FROM builds c "
                      "WHERE c.name = b.name)")
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(query + " ORDER BY name, version").fetchall()
        return [_load(r[0]) for r in rows]

    def find_card_build(self, name: str, card_hash: str, origin: str | None) -> Build | None:
        """The latest build of ``name`` made from this card hash (and ``origin``, when given)."""
        found = self.find_card_builds(name, card_hash, origin)
        return found[0] if found else None

    def find_card_builds(self, name: str, card_hash: str, origin: str | None) -> list[Build]:
        """Every build of ``name`` made from this card hash (and ``origin``, when given),
        newest first."""
        query = "SELECT entry FROM builds WHERE name = ? AND card_hash = ?"
        args: tuple = (name, card_hash)
        if origin is not None:
            query += " AND origin = ?"
            args += (origin,)
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(query + " ORDER BY version DESC", args).fetchall()
        return [_load(r[0]) for r in rows]

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` result (``"ok"`` when healthy)."""
        with self._read() as conn:
            if conn is None:
                return "ok"
            return "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check").fetchall())


def _load(text: str) -> Build:
    return Build.from_dict(json.loads(text))


def _statements(script: str) -> list[str]:
    """Split the schema into statements (trigger bodies contain ';', so split on 'END;')."""
    out, pending = [], ""
    for line in script.strip().splitlines():
        pending += line + "\n"
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    return out


def _retry_locked(fn: Callable[[], object], timeout: float = BUSY_TIMEOUT_S) -> None:
    """Call ``fn`` until it stops raising 'database is locked' (or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            fn()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
