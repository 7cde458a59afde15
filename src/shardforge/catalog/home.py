"""Where the catalog lives (``SHARDFORGE_HOME``) and which code version built an entry."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from shardforge.catalog.errors import CatalogError

HOME_ENV = "SHARDFORGE_HOME"
DEFAULT_HOME = "~/.shardforge"
DB_FILE = "catalog.db"
TIMEOUT_ENV = "SHARDFORGE_CATALOG_TIMEOUT"
READ_ONLY_ENV = "SHARDFORGE_HOME_READ_ONLY"
RUNS_ENV = "SHARDFORGE_RUNS"
RUNS_DIR = "runs"
_FALSE = ("", "0", "false", "no", "off")


def default_home() -> Path:
    """``$SHARDFORGE_HOME`` when set, else ``~/.shardforge`` (not created here)."""
    return Path(os.path.expanduser(os.environ.get(HOME_ENV) or DEFAULT_HOME)).absolute()


def default_runs() -> str:
    """Where training runs go when neither ``--storage`` nor ``run.storage_path`` says:
    ``$SHARDFORGE_RUNS`` when set (an absolute path or a URL, e.g. ``s3://BUCKET/runs``
    for a multi-node cluster), else ``HOME/runs`` (:func:`default_home`; not created
    here)."""
    chosen = os.environ.get(RUNS_ENV, "").strip()
    if chosen:
        return chosen if "://" in chosen else os.path.abspath(os.path.expanduser(chosen))
    return str(default_home() / RUNS_DIR)


def lock_timeout(default: float) -> float:
    """Seconds to wait for the catalog's lock: ``$SHARDFORGE_CATALOG_TIMEOUT`` when set,
    else ``default``. A value that is not a number >= 0 raises :class:`CatalogError`."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:   # also NaN
        raise CatalogError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds >= 0; "
                           f"set it to e.g. 60, or unset it")
    return value


def read_only_forced() -> bool:
    """Whether ``$SHARDFORGE_HOME_READ_ONLY`` asks for a read-only catalog (any value but
    empty, ``0``, ``false``, ``no`` or ``off``): every connection is then opened read-only
    without creating a file (SQLite ``mode=ro``, ``immutable=1`` while no ``-wal`` holds
    pages) and every write is refused. For a home on a mounted volume this process must not
    write, even where permissions would let it (root ignores ``chmod a-w``)."""
    return os.environ.get(READ_ONLY_ENV, "").strip().lower() not in _FALSE


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The catalog home: ``home`` when given, else :func:`default_home`.

    The home holds the SQLite catalog, so it must be a local directory (SQLite needs
    working file locks; object stores and most network filesystems lack them). Shards
    themselves may live anywhere :mod:`shardforge.storage` reaches.
    """
    if home is None:
        return default_home()
    text = os.fspath(home)
    if "://" in text and not text.startswith("file://"):
        raise CatalogError(f"catalog home {text!r} is a URL; the catalog is a SQLite file and "
                           "needs a local directory: give a local path (shards may still go to "
                           "s3:// with --out-root)")
    if text.startswith("file://"):
        text = text[len("file://"):]
    return Path(os.path.expanduser(text)).absolute()


def code_version() -> str:
    """``shardforge VERSION`` plus ``+gCOMMIT`` when running from a git checkout.

    The commit is read from the checkout's ``.git`` files (no ``git`` process); a
    working tree with uncommitted changes is not detected.
    """
    try:
        version = metadata.version("shardforge")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit = _git_commit(Path(__file__).resolve().parents[3])
    return f"shardforge {version}" + (f"+g{commit[:12]}" if commit else "")


def _git_commit(repo: Path) -> str | None:
    """The commit ``HEAD`` points at in ``repo``'s ``.git``, or None (not a checkout)."""
    git = repo / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: PATH"
            text = git.read_text().strip()
            if not text.startswith("gitdir:"):
                return None
            git = (repo / text.split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head.split(":", 1)[1].strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip() or None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        return None
    return None
