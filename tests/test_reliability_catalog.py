"""Catalog faults (issue 13, item 8) and the reuse check's rehash (item 7, catalog half).

The fault matrix runs the real CLI (``python -m shardforge.cli``) in a subprocess: 6 faults
(garbage, truncated and newer-schema ``catalog.db``, a read-only home, a lock held past the
timeout, a full disk) x 4 commands (``catalog list``, ``show``, ``resolve``, ``register``).
A failing command exits 1 with exactly one line on stderr naming the catalog file and the
fix, and no traceback; read commands on a read-only home or a full disk succeed and print
the build. The read-only home is tested as an unprivileged user (the child drops to uid
65534 with ``os.setuid`` when the tests run as root; root ignores permissions). The full
disk is a 512 KiB tmpfs filled to the last block (``mount``, root only; skipped otherwise).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import shardforge
from shardforge.catalog.errors import RegistrationError
from shardforge.catalog.register import register_build
from shardforge.catalog.store import Store

SRC = str(Path(shardforge.__file__).resolve().parents[1])
NAME = "faulty"
COMMANDS = {
    "list": ["list"],
    "show": ["show", NAME],
    "resolve": ["resolve", NAME, "--format", "wds", "--split", "train"],
    "register": ["register", "{out}", "--name", "other"],
}
READS = ("list", "show", "resolve")
FAULTS = ("garbage", "truncated", "newer_schema", "read_only", "lock_held", "disk_full")
NOBODY = 65534
CLI_TIMEOUT_S = 60          # "does not hang": every command here returns in seconds

# Drops to an unprivileged user after importing what the catalog CLI needs (the
# interpreter's own directory may be closed to that user), then runs the CLI.
_AS_NOBODY = textwrap.dedent(f"""
    import os, sys
    import shardforge.cli, shardforge.cli.eval, shardforge.cli.catalog, shardforge.catalog.lookup
    import shardforge.logs, shardforge.cli.view, shardforge.cli.stage
    import shardforge.catalog.verifier, shardforge.catalog.dbfile, shardforge.catalog.entry
    import shardforge.catalog.register, shardforge.catalog.store, shardforge.storage
    from shardforge.catalog.home import code_version
    code_version()
    os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
    sys.exit(shardforge.cli.main(sys.argv[1:]))
    """)

# Holds the catalog in SQLite's exclusive locking mode (readers and writers both wait),
# or in a plain write transaction (WAL readers go on), until stdin closes.
_HOLD_LOCK = textwrap.dedent("""
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    if sys.argv[2] == "exclusive":
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
    else:
        conn.execute("BEGIN IMMEDIATE")
    conn.execute("SELECT COUNT(*) FROM builds").fetchall()
    print("held", flush=True)
    sys.stdin.read()
    """)


# -- fixtures and helpers --------------------------------------------------------------

@pytest.fixture
def base() -> Iterator[Path]:
    """A world-readable temporary directory (pytest's tmp_path is closed to other users)."""
    path = Path(tempfile.mkdtemp(prefix="sf-catalog-faults-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(path, ignore_errors=True)


def make_output(base: Path, name: str = NAME) -> Path:
    """A finished output directory: one tar and a summary.json that lists it."""
    out = base / f"out-{name}"
    (out / "wds").mkdir(parents=True)
    data = os.urandom(3000)
    tar = out / "wds" / f"{name}-train-000000.tar"
    tar.write_bytes(data)
    rec = {"url": str(tar), "path": f"wds/{tar.name}", "size": len(data),
           "sha256": hashlib.sha256(data).hexdigest()}
    summary = {"name": name, "out": str(out), "splits": {"train": {"samples": 3, "shards": 1}},
               "samples": 3, "formats": {"wds": {"train": [rec]}}, "index": None,
               "rejects": {"count": 0}, "bytes_per_sample": 1000, "source": str(base)}
    (out / "summary.json").write_text(json.dumps(summary))
    for p in (out, out / "wds"):
        p.chmod(0o755)
    return out


def make_home(base: Path) -> tuple[Path, Path]:
    """A catalog home with one registered build ``faulty@v1``, and a second, unregistered
    output for ``register``."""
    home = base / "home"
    out = make_output(base)
    register_build(home, NAME, json.loads((out / "summary.json").read_text()))
    home.chmod(0o755)
    return home, make_output(base, "other")


def cli(args: list[str], home: Path, *, as_nobody: bool = False,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """``shardforge catalog ARGS --home HOME`` in a subprocess (this checkout's code)."""
    argv = ["catalog", *args, "--home", str(home)]
    if as_nobody and os.geteuid() == 0:
        command = [sys.executable, "-c", _AS_NOBODY, *argv]
    else:
        command = [sys.executable, "-m", "shardforge.cli", *argv]
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env,
                          timeout=CLI_TIMEOUT_S, cwd=str(home.parent))


def command_args(command: str, other: Path) -> list[str]:
    return [a.replace("{out}", str(other)) for a in COMMANDS[command]]


def assert_one_line_error(proc: subprocess.CompletedProcess, db: Path, *fixes: str) -> str:
    """Exit 1, exactly one line on stderr that names ``db`` and each of ``fixes``."""
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert str(db) in lines[0], lines[0]
    for fix in fixes:
        assert fix in lines[0], (fix, lines[0])
    return lines[0]


def assert_read_ok(proc: subprocess.CompletedProcess, command: str, home: Path) -> None:
    """A read command that succeeded and printed the registered build."""
    assert proc.returncode == 0 and proc.stderr == "", (proc.returncode, proc.stderr)
    expected = {"list": f"{NAME}@v1", "show": f"{NAME}@v1",
                "resolve": f"{NAME}-train-000000.tar"}[command]
    assert expected in proc.stdout, proc.stdout


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def lock_holder(db: Path, mode: str) -> Iterator[None]:
    """Another process holding the catalog's lock (``exclusive`` or ``write``)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(db), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield
    finally:
        proc.stdin.close()
        proc.wait(timeout=CLI_TIMEOUT_S)


@contextlib.contextmanager
def full_disk(base: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs at ``base/full`` (root only), yielded once filled to the last block."""
    mnt = base / "full"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk is simulated with a tmpfs mount, which needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=755", "tmpfs",
                           str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill(directory: Path) -> None:
    with open(directory / "filler", "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
    assert shutil.disk_usage(directory).free == 0


# -- the matrix: 6 faults x 4 commands -------------------------------------------------

# What a home holds after its writes: no -wal or -shm left behind (catalog.db.checked:
# the files' stamp after the last write, see shardforge.catalog.store).
HOME_FILES = ["catalog.db", "catalog.db.checked"]

@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("fault", FAULTS)
def test_catalog_fault(fault: str, command: str, base: Path) -> None:
    home, other = make_home(base)
    db = home / "catalog.db"
    args = command_args(command, other)
    if fault == "garbage":
        db.write_bytes(os.urandom(db.stat().st_size))
    elif fault == "truncated":
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    elif fault == "newer_schema":
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA user_version = 99")
            conn.commit()

    if fault in ("garbage", "truncated", "newer_schema"):
        before = digest(db)
        proc = cli(args, home)
        fix = "upgrade shardforge" if fault == "newer_schema" else f"mv {db} {db}.damaged"
        assert_one_line_error(proc, db, fix)
        assert digest(db) == before                       # never modified
        assert sorted(os.listdir(home)) == HOME_FILES
    elif fault == "read_only":
        home.chmod(0o555)
        db.chmod(0o444)
        before = digest(db)
        proc = cli(args, home, as_nobody=True)
        if command in READS:
            assert_read_ok(proc, command, home)
        else:
            assert_one_line_error(proc, db, "read-only", "--home DIR")
        assert digest(db) == before and sorted(os.listdir(home)) == HOME_FILES
    elif fault == "lock_held":
        with lock_holder(db, "exclusive"):
            proc = cli(args, home, env={"SHARDFORGE_CATALOG_TIMEOUT": "1"})
        assert_one_line_error(proc, db, "stayed locked for 1 s", "SHARDFORGE_CATALOG_TIMEOUT")
        assert Store(home).names() == [NAME]
    elif fault == "disk_full":
        with full_disk(base) as mnt:
            shutil.copy(db, mnt / "catalog.db")
            fill(mnt)
            before = digest(mnt / "catalog.db")
            proc = cli(args, mnt)
            if command in READS:
                assert_read_ok(proc, command, mnt)
            else:
                assert_one_line_error(proc, mnt / "catalog.db", "disk is full", "free space")
            assert digest(mnt / "catalog.db") == before
            assert_read_ok(cli(COMMANDS["list"], mnt), "list", mnt)   # still readable
            (mnt / "filler").unlink()                      # space again: register works
            again = cli(command_args("register", other), mnt)
            assert again.returncode == 0, again.stderr
            assert Store(mnt).names() == ["faulty", "other"]
    else:
        raise AssertionError(fault)


# -- around the matrix -----------------------------------------------------------------

def test_full_disk_during_the_write_rolls_back(base: Path) -> None:
    """The disk fills with SQLite's -shm already in place: the WAL append fails, the
    transaction rolls back, the file is unchanged and every build still reads."""
    home, other = make_home(base)
    with full_disk(base) as mnt:
        shutil.copy(home / "catalog.db", mnt / "catalog.db")
        assert_read_ok(cli(COMMANDS["list"], mnt), "list", mnt)   # leaves -shm and -wal
        assert (mnt / "catalog.db-shm").stat().st_size > 0
        fill(mnt)
        before = digest(mnt / "catalog.db")
        proc = cli(command_args("register", other), mnt)
        line = assert_one_line_error(proc, mnt / "catalog.db", "disk is full", "free space")
        assert "database or disk is full" in line
        assert digest(mnt / "catalog.db") == before
        assert Store(mnt).names() == [NAME]


def test_full_disk_message_and_rollback_without_root(base: Path, monkeypatch) -> None:
    """Runs as any user: SQLite's SQLITE_FULL injected at the INSERT (a stand-in for the
    tmpfs cases above); one line, nothing registered, the catalog still reads."""
    from shardforge.catalog import store as store_module

    home, other = make_home(base)
    real_connect = sqlite3.connect

    class FullAtInsert:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def execute(self, sql: str, *args):
            if sql.startswith("INSERT"):
                raise sqlite3.OperationalError("database or disk is full")
            return self._conn.execute(sql, *args)

        def __getattr__(self, name: str):
            return getattr(self._conn, name)

    monkeypatch.setattr(store_module.sqlite3, "connect",
                        lambda *a, **k: FullAtInsert(real_connect(*a, **k)))
    before = digest(home / "catalog.db")
    with pytest.raises(RegistrationError) as info:
        register_build(home, "other", json.loads((other / "summary.json").read_text()))
    text = str(info.value)
    assert "\n" not in text and str(home / "catalog.db") in text
    assert "the disk is full" in text and "free space" in text
    monkeypatch.undo()
    assert digest(home / "catalog.db") == before and Store(home).names() == [NAME]


def test_a_write_transaction_does_not_block_readers(base: Path) -> None:
    """WAL: a registration in progress elsewhere leaves list/show/resolve working."""
    home, other = make_home(base)
    with lock_holder(home / "catalog.db", "write"):
        for command in READS:
            assert_read_ok(cli(COMMANDS[command], home, env={"SHARDFORGE_CATALOG_TIMEOUT":
                                                             "1"}), command, home)
        proc = cli(command_args("register", other), home,
                   env={"SHARDFORGE_CATALOG_TIMEOUT": "1"})
        assert_one_line_error(proc, home / "catalog.db", "stayed locked")


def test_read_only_home_reads_the_wal_when_a_writer_left_one(base: Path) -> None:
    """A read-only home whose -wal still holds a committed build: mode=ro reads it
    (immutable=1 would miss it)."""
    home, other = make_home(base)
    db = home / "catalog.db"
    keep = sqlite3.connect(db, isolation_level=None)     # keeps -wal/-shm from being removed
    try:
        keep.execute("SELECT COUNT(*) FROM builds").fetchall()
        register_build(home, "other", json.loads((other / "summary.json").read_text()))
        assert os.path.getsize(f"{db}-wal") > 0
        home.chmod(0o555)
        for p in home.iterdir():
            p.chmod(0o444)
        proc = cli(["list"], home, as_nobody=True)
        assert proc.returncode == 0, proc.stderr
        assert "faulty@v1" in proc.stdout and "other@v1" in proc.stdout
    finally:
        keep.close()


def test_register_refuses_a_catalog_damaged_inside(base: Path) -> None:
    """A page overwritten inside the file (header intact): quick_check refuses the write."""
    home, other = make_home(base)
    db = home / "catalog.db"
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) >= 3 * page
    data[page + 8: 2 * page] = os.urandom(page - 8)   # the builds table's root page
    db.write_bytes(bytes(data))
    before = digest(db)
    proc = cli(command_args("register", other), home)
    assert_one_line_error(proc, db, f"mv {db} {db}.damaged")
    assert digest(db) == before


def test_missing_home_that_cannot_be_created(base: Path) -> None:
    parent = base / "closed"
    parent.mkdir(mode=0o555)
    home = parent / "home"
    other = make_output(base, "other")
    assert cli(["list"], home, as_nobody=True).returncode == 0        # no catalog: empty
    proc = cli(command_args("register", other), home, as_nobody=True)
    assert_one_line_error(proc, home / "catalog.db", "read-only", "--home DIR")


def test_bad_timeout_setting_is_one_line(base: Path) -> None:
    home, _other = make_home(base)
    proc = cli(["list"], home, env={"SHARDFORGE_CATALOG_TIMEOUT": "soon"})
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "SHARDFORGE_CATALOG_TIMEOUT='soon'" in proc.stderr


def test_ingest_registration_on_a_damaged_catalog_says_how_to_register_later(base: Path) -> None:
    """The registration at the end of run_ingest: one line, the data kept, the command to
    register it later."""
    from shardforge.catalog.hooks import catalog_hooks

    home, other = make_home(base)
    db = home / "catalog.db"
    db.write_bytes(b"not a database at all" * 100)
    summary = json.loads((other / "summary.json").read_text())
    with pytest.raises(RegistrationError) as info:
        catalog_hooks(str(home), "other", log=io.StringIO()).committed(summary)
    text = str(info.value)
    assert "\n" not in text and str(db) in text
    assert f"shardforge catalog register {other}" in text


# -- item 7: a same-size corruption of a reused build is not reused ----------------------

TINY_CARD = """
    name: tiny
    description: The demo generator at toy size.
    source:
      demo: {num_classes: 4, train_per_class: 3, val_per_class: 1, min_side: 64, max_side: 96}
    pipeline:
      name: ingest
      params: {max_res: 32, shard_size: 8}
    licence: CC0-1.0
    """


@pytest.mark.usefixtures("ray_local")
def test_bit_flip_in_a_reused_build_is_rebuilt_not_reused(tmp_path: Path) -> None:
    from shardforge.catalog.builder import build_dataset
    from shardforge.catalog.verifier import verify_build

    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tiny.yaml").write_text(textwrap.dedent(TINY_CARD))
    home = tmp_path / "home"
    first = build_dataset("tiny", home=home, cards_dir=cards, log=io.StringIO())
    label, rec = next((lbl, r) for lbl, r in first.files() if lbl.startswith("wds"))
    tar = Path(rec["url"])
    good = tar.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01                  # same size, one bit
    tar.write_bytes(bytes(damaged))
    assert not verify_build(first).ok

    log = io.StringIO()
    again = build_dataset("tiny", home=home, cards_dir=cards, log=log)
    text = log.getvalue()
    assert "tiny: reusing" not in text, text
    assert f"{first.ref} has 1 missing or corrupt file(s) (first: {tar}" in text
    assert "(corrupt)" in text and "building again" in text
    assert tar.read_bytes() == good                     # rebuilt: the same bytes as before
    assert again.ref == first.ref and verify_build(again).ok
    log = io.StringIO()
    assert build_dataset("tiny", home=home, cards_dir=cards, log=log) == again
    assert "tiny: reusing tiny@v1" in log.getvalue()


def test_a_damaged_parent_that_cannot_be_rebuilt_is_refused(base: Path) -> None:
    """A parent with no card (only a catalog build): a bit flip in its tar stops
    `shardforge build CHILD` before any work, with one line naming the file."""
    home, _other = make_home(base)
    cards = base / "cards"
    cards.mkdir()
    (cards / "child.yaml").write_text(textwrap.dedent(f"""
        name: child
        description: A child of a build that has no card.
        licence: CC0-1.0
        source: {{dataset: {NAME}}}
        pipeline: {{name: ingest, params: {{max_res: 24}}}}
        """))
    build = ["--cards", str(cards), "--home", str(home), "--dry-run"]
    command = [sys.executable, "-m", "shardforge.cli", "build", "child", *build]
    env = {**os.environ, "PYTHONPATH": SRC}
    ok = subprocess.run(command, capture_output=True, text=True, env=env,
                        timeout=CLI_TIMEOUT_S)
    assert ok.returncode == 0 and "child: would build" in ok.stderr, ok.stderr
    tar = base / f"out-{NAME}" / "wds" / f"{NAME}-train-000000.tar"
    data = bytearray(tar.read_bytes())
    data[100] ^= 0x80
    tar.write_bytes(bytes(data))
    proc = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=CLI_TIMEOUT_S)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert str(tar) in lines[0] and "(corrupt)" in lines[0]
    assert f"shardforge catalog verify {NAME}@v1" in lines[0] and "ingest it again" in lines[0]
