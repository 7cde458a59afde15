"""The embedded catalog store: one SQLite file, ``HOME/catalog.db``, safe for many processes.

Concurrency: the database runs in WAL mode (readers never block the writer); every write
is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two writers
serialise instead of deadlocking on a lock upgrade) and waits up to
:data:`BUSY_TIMEOUT_S` for the lock. A version number is allocated inside the same
transaction that inserts the entry, so concurrent registrations never share or skip a
version. Entries are immutable: triggers refuse UPDATE and DELETE.

Like every SQLite database, the file must sit on a local disk (or a filesystem with
working POSIX locks); object stores and most NFS setups do not qualify.

Faults: every SQLite or OS error becomes :class:`CatalogUnavailable`, one line naming the
file, the problem and the fix (:mod:`shardforge.catalog.dbfile`): a damaged or truncated
file (checked from its header before SQLite touches it), a schema newer than this code
(refused, never modified), a read-only home, a lock held past the timeout
(``SHARDFORGE_CATALOG_TIMEOUT`` seconds, default 60), a full disk (the transaction rolls
back; the file is unchanged). Reads open the file read-only (SQLite ``mode=ro``), so they
work on a read-only home: with its ``-wal`` file present the WAL is read through it; with
none and a directory this process cannot write (or one with no write bit, which root could
write; no writer can exist there, SQLite would need to create the ``-wal``) the file is
opened ``immutable=1``, which needs no ``-shm``;
so is a file whose ``-shm`` cannot be set up (a full disk) while no ``-wal`` holds pages.
Before a write the file passes ``PRAGMA quick_check``, so a damaged catalog is never
written to, unless nothing but shardforge's own writes touched it since the last write
that checked it: after each write the (size, mtime, ctime, inode) of ``catalog.db`` and
the (size, mtime, inode) of its ``-wal`` go to ``catalog.db.checked``, and a write that finds the same skips the
check (a full pass over the file, 62 ms at 201 MiB: the one write cost that grew with
the catalog, docs/scale.md). Any other writer of the database changes its ctime, which no
one can set back; damage below the filesystem (a failing disk), or to the ``-wal`` with its
mtime put back, goes unseen until the next check (``catalog.db.checked`` removed, or any
other change). With ``$SHARDFORGE_HOME_READ_ONLY`` set (``--read-only`` on the CLI) reads
always open the file as on a read-only directory and writes are refused before any file
is opened: for a home on a mounted volume that this process must never write.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from shardforge.catalog.dbfile import (
    CatalogUnavailable,
    damaged,
    explain,
    header_problem,
    header_user_version,
    newer_schema,
    nonempty,
)
from shardforge.catalog.entry import Build
from shardforge.catalog.home import (
    DB_FILE,
    READ_ONLY_ENV,
    lock_timeout,
    read_only_forced,
    resolve_home,
)

BUSY_TIMEOUT_S = 60.0
CHECKED_SUFFIX = ".checked"   # catalog.db.checked: the files' stamp after the last write
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

    def __init__(self, home: str | Path | None = None, timeout: float | None = None,
                 read_only: bool | None = None) -> None:
        """``timeout``: seconds to wait for a lock (default: ``$SHARDFORGE_CATALOG_TIMEOUT``,
        else :data:`BUSY_TIMEOUT_S`). ``read_only`` (default: ``$SHARDFORGE_HOME_READ_ONLY``,
        :func:`~shardforge.catalog.home.read_only_forced`): never create or write a file
        in the home; writes raise :class:`CatalogUnavailable`."""
        self.home = resolve_home(home)
        self.path = self.home / DB_FILE
        self.timeout = lock_timeout(BUSY_TIMEOUT_S) if timeout is None else float(timeout)
        self.read_only = read_only_forced() if read_only is None else bool(read_only)

    # -- connections -------------------------------------------------------------------

    def _connect(self, readonly: bool = False, immutable: bool = False) -> sqlite3.Connection:
        if readonly:
            uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
            if immutable or ((self.read_only or not _writable_dir(self.home))
                             and not nonempty(f"{self.path}-wal")):
                uri += "&immutable=1"
            conn = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None)
        else:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return conn

    @contextlib.contextmanager
    def _faults(self, writing: bool) -> Iterator[None]:
        """Turn SQLite, OS and decoding errors into one-line :class:`CatalogUnavailable`."""
        try:
            yield
        except CatalogUnavailable:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise CatalogUnavailable(self._explain(exc, writing)) from exc

    def _explain(self, exc: BaseException, writing: bool) -> str:
        return explain(exc, self.path, self.timeout, writing)

    def _check_file(self, conn: sqlite3.Connection | None = None) -> bool:
        """Whether the file holds a catalog this code can use (False: empty or being
        created). Raises :class:`CatalogUnavailable` for a damaged, truncated or newer one."""
        if conn is None:
            problem = header_problem(self.path)
            if problem:
                raise CatalogUnavailable(damaged(self.path, problem))
            version = header_user_version(self.path)
        else:
            # Never open() the file while a connection to it is open: closing any descriptor
            # of a file drops every POSIX lock this process holds on it, and another writer
            # then commits over ours (SQLite's "How To Corrupt", 2.2; lost registrations in
            # tests/test_catalog_store.py::test_parallel_writers_lose_nothing).
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise CatalogUnavailable(newer_schema(self.path, version, SCHEMA_VERSION))
        return conn is not None and version >= SCHEMA_VERSION

    def _create(self) -> None:
        """Create the home, the database, WAL mode and the schema (idempotent, race-safe)."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._check_file()          # header only: refuse before SQLite creates -wal/-shm
        with contextlib.closing(self._connect()) as conn:
            if self._check_file(conn):
                return
            # Switching to WAL needs a moment with no other connection: retry while busy.
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone(),
                          self.timeout)
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    for statement in _statements(_SCHEMA):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection, or None while no catalog exists (or is being created)."""
        with self._faults(writing=False):
            if not self.path.exists() or self.path.stat().st_size == 0:
                yield None
                return
            self._check_file()      # header only: refuse before SQLite creates -wal/-shm
            conn, ready = self._open_for_read()
            with contextlib.closing(conn):
                yield conn if ready else None

    def _open_for_read(self) -> tuple[sqlite3.Connection, bool]:
        """A read-only connection and whether the catalog has its schema (a database
        another process is creating this instant has none yet). When SQLite cannot set up
        its shared memory (``-shm``: read-only directory, full disk) and no ``-wal`` holds
        pages, the file is reopened ``immutable=1``: a snapshot read that needs no -shm."""
        conn = self._connect(readonly=True)
        try:
            return conn, self._check_file(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            low = str(exc).lower()
            if "locked" in low or "busy" in low or nonempty(f"{self.path}-wal"):
                raise
        conn = self._connect(readonly=True, immutable=True)
        try:
            return conn, self._check_file(conn)
        except BaseException:
            conn.close()
            raise

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction on a catalog that passes ``quick_check``:
        committed on success, rolled back on error (the file is then unchanged)."""
        if self.read_only:
            raise CatalogUnavailable(
                f"catalog {self.path} is open read-only ({READ_ONLY_ENV} is set, or "
                "--read-only): nothing was written; unset it, or use a writable home "
                "(--home DIR)")
        with self._faults(writing=True):
            self._create()
            conn = self._connect()
            with contextlib.closing(conn):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._check_file(conn)
                    if self._stamp() != self._checked_stamp():
                        check = conn.execute("PRAGMA quick_check").fetchall()
                        if [r[0] for r in check] != ["ok"]:
                            raise sqlite3.DatabaseError("quick_check: " + "; ".join(
                                r[0] for r in check[:3]) + " (corrupt)")
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            self._record_checked()

    def _stamp(self) -> str:
        """(size, mtime, ctime, inode) of the database and (size, mtime, inode) of its
        ``-wal`` unless that is absent or empty (opening a connection creates it empty; the last one to close
        removes it); ``stat`` only (opening the file would drop this process's SQLite
        locks, see _check_file)."""
        parts = []
        for path in (self.path, Path(f"{self.path}-wal")):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if path == self.path:
                parts.append(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}")
            elif st.st_size:    # no ctime: SQLite running as root chowns the -wal it opens
                parts.append(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
        return " ".join(parts)

    def _checked_stamp(self) -> str | None:
        try:
            return Path(f"{self.path}{CHECKED_SUFFIX}").read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def _record_checked(self) -> None:
        """After a write (connection closed, so SQLite's close-time checkpoint is in):
        the files' stamp, written atomically. Best effort: without it the next write
        runs the check."""
        target = Path(f"{self.path}{CHECKED_SUFFIX}")
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(self._stamp())
            os.replace(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

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
            self._insert_row(conn, build)
            return build, True

    def add_entries(self, builds: Sequence[Build]) -> list[tuple[str, Build]]:
        """Add builds registered elsewhere under their own ``NAME@vN`` (``shardforge
        catalog sync``), all in one transaction. Per build, in order, ``(status, build)``:
        ``"present"`` and the entry already holding its ``build_id`` (nothing written),
        ``"conflict"`` and the other build already at its ``NAME@vN`` (never
        overwritten), else ``"added"`` and the build. Concurrent callers serialise on the
        write lock, and ``build_id`` and ``(name, version)`` are unique, so nothing is
        added twice."""
        out: list[tuple[str, Build]] = []
        with self._write() as conn:
            for build in builds:
                row = conn.execute("SELECT entry FROM builds WHERE build_id = ?",
                                   (build.build_id,)).fetchone()
                if row is None:
                    row = conn.execute("SELECT entry FROM builds WHERE name = ? AND "
                                       "version = ?", (build.name, build.version)).fetchone()
                    if row is None:
                        self._insert_row(conn, build)
                        out.append(("added", build))
                        continue
                    out.append(("conflict", _load(row[0])))
                    continue
                out.append(("present", _load(row[0])))
        return out

    @staticmethod
    def _insert_row(conn: sqlite3.Connection, build: Build) -> None:
        conn.execute(
            "INSERT INTO builds (name, version, build_id, created, registered, pipeline, "
            "card_hash, parent, origin, samples, entry) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (build.name, build.version, build.build_id, build.created, build.registered,
             build.pipeline, build.card_hash, build.parent, build.origin, build.samples,
             json.dumps(build.to_dict(), sort_keys=True)))

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
        return list(self.each(latest_only))

    def each(self, latest_only: bool = False) -> Iterator[Build]:
        """:meth:`all`, one build at a time: only one entry is parsed and held at once
        (an entry holds every file record; 1,000 builds of 1,000 files are 0.8 GB of
        Python objects, docs/scale.md). The read stays open until the iteration ends."""
        query = "SELECT entry FROM builds b"
        if latest_only:
            query += (" WHERE version = (SELECT MAX(version) FROM builds c "
                      "WHERE c.name = b.name)")
        with self._read() as conn:
            if conn is None:
                return
            for row in conn.execute(query + " ORDER BY name, version"):
                yield _load(row[0])

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


def _writable_dir(path: Path) -> bool:
    """Whether this process may create files in ``path``: ``access(W_OK)``, and (for root,
    whom permissions do not stop) some write bit set: ``chmod -R a-w HOME`` means
    read-only for every user."""
    try:
        return os.access(path, os.W_OK) and bool(os.stat(path).st_mode & 0o222)
    except OSError:
        return False


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already (it does on a full disk)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _load(text: str) -> Build:
    """An entry's Build; ``sqlite3.DatabaseError`` (a damaged catalog) when unreadable."""
    try:
        return Build.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise sqlite3.DatabaseError(f"malformed entry: {type(exc).__name__}: {exc}") from exc


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
