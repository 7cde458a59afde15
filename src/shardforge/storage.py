"""Storage locations: local directories and object-store URLs through pyarrow.fs.

A *location* is a string: a local path (``/data/out``, ``out``), a ``file://`` URL or
an object-store URL (``s3://bucket/prefix``). S3 endpoints that are not AWS (MinIO,
moto, Ceph) are given in the URL query, as pyarrow understands it:
``s3://bucket/prefix?endpoint_override=127.0.0.1:9000&scheme=http``. Credentials
come from the usual AWS sources (environment, ``~/.aws``), as with every AWS client.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Location:
    """A resolved storage location: a pyarrow filesystem plus a path inside it."""

    fs: pafs.FileSystem
    path: str
    url: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def join(self, *parts: str) -> Location:
        """The location of ``parts`` below this one."""
        path = posixpath.join(self.path, *parts)
        return Location(self.fs, path, _join_url(self.url, *parts))

    def parent(self) -> Location:
        """The directory holding this location."""
        return Location(self.fs, posixpath.dirname(self.path), _parent_url(self.url))

    def sha256(self) -> str:
        """Hex sha256 of the file's bytes, streamed in 4 MiB blocks."""
        h = hashlib.sha256()
        with self.fs.open_input_stream(self.path) as f:
            while block := f.read(1 << 22):
                h.update(block)
        return h.hexdigest()

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def size(self) -> int | None:
        """Size in bytes, or None when the file does not exist."""
        info = self.fs.get_file_info(self.path)
        return None if info.type == pafs.FileType.NotFound else info.size

    def makedirs(self) -> None:
        self.fs.create_dir(self.path, recursive=True)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_file(self.path) as f:
            return f.read()

    def read_range(self, offset: int, size: int) -> bytes:
        with self.fs.open_input_file(self.path) as f:
            return f.read_at(size, offset)

    def write_bytes_atomic(self, data: bytes) -> None:
        """Write ``data`` under a temporary name, then rename it into place.

        Readers never see a partial file: on a local disk the rename is atomic; on an
        object store the temporary object is copied into place whole.
        """
        tmp = self.tmp_sibling()
        with tmp.fs.open_output_stream(tmp.path) as f:
            f.write(data)
        self.fs.move(tmp.path, self.path)

    def upload_file_atomic(self, local_path: str) -> None:
        """Copy a local file here under a temporary name, then rename it into place."""
        if self.is_local and os.path.abspath(local_path) == os.path.abspath(self.path):
            return
        tmp = self.tmp_sibling()
        pafs.copy_files(local_path, tmp.path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=tmp.fs)
        self.fs.move(tmp.path, self.path)

    def tmp_sibling(self) -> Location:
        """A unique temporary name next to this location (same directory, same filesystem)."""
        head, tail = posixpath.split(self.path)
        name = f".{tail}.tmp-{uuid.uuid4().hex[:12]}"
        return Location(self.fs, posixpath.join(head, name), _join_url(_parent_url(self.url), name))

    def delete(self) -> None:
        if self.exists():
            self.fs.delete_file(self.path)

    def list_files(self, recursive: bool = True) -> list[str]:
        """Paths (inside ``fs``) of the files below this directory, sorted."""
        selector = pafs.FileSelector(self.path, recursive=recursive, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def child_url(self, path_in_fs: str) -> str:
        """The URL of a path below this location, as listed by :meth:`list_files`."""
        rel = posixpath.relpath(path_in_fs, self.path)
        return _join_url(self.url, rel)


def resolve(url: str) -> Location:
    """Resolve a path or URL to a :class:`Location`.

    Raises ValueError naming the URL when pyarrow cannot handle its scheme.
    """
    if not url:
        raise ValueError("empty location: give a directory path or an s3:// URL")
    scheme = urlsplit(url).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # len 1: a Windows drive letter
        path = urlsplit(url).path if scheme == "file" else url
        path = os.path.abspath(os.path.expanduser(path))
        return Location(pafs.LocalFileSystem(), path, path)
    try:
        fs, path = pafs.FileSystem.from_uri(url)
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot open storage location {url!r}: {exc}; "
                         "use a local path or an s3:// URL") from exc
    return Location(fs, path.rstrip("/"), url.rstrip("/") if "?" not in url else url)


def _split_query(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), parts.query


def _join_url(url: str, *parts: str) -> str:
    if "://" not in url:
        return os.path.join(url, *parts)
    base, query = _split_query(url)
    joined = posixpath.join(base.rstrip("/"), *parts)
    return f"{joined}?{query}" if query else joined


def _parent_url(url: str) -> str:
    if "://" not in url:
        return os.path.dirname(url)
    base, query = _split_query(url)
    parent = posixpath.dirname(base.rstrip("/"))
    return f"{parent}?{query}" if query else parent
