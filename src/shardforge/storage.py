"""Storage locations: local directories and object-store URLs through pyarrow.fs.

A *location* is a string: a local path (``/data/out``, ``out``), a ``file://`` URL or
an object-store URL (``s3://bucket/prefix``). S3 endpoints that are not AWS (MinIO,
moto, Ceph) are given in the URL query, as pyarrow understands it:
``s3://bucket/prefix?endpoint_override=127.0.0.1:9000&scheme=http``. Credentials
come from the usual AWS sources (environment, ``~/.aws``), as with every AWS client.

Google Cloud Storage (``gs://bucket/prefix``), Azure (``az://container/prefix``,
``abfs://``, ``abfss://``) and the Hugging Face Hub (``hf://datasets/USER/REPO/path``) go
through fsspec, wrapped for pyarrow as ``PyFileSystem(FSSpecHandler(fs))``: they need
the matching fsspec package (:data:`FSSPEC_SCHEMES`: gcsfs, adlfs, huggingface_hub) on
the driver and on every Ray worker; without it :func:`resolve` raises one line naming
the package to install. The URL query becomes the filesystem's keyword arguments
(strings), e.g. ``az://container/prefix?account_name=NAME``; credentials come from each
package's usual sources (``gcloud`` application-default credentials,
``AZURE_STORAGE_*`` variables, ``HF_TOKEN``).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

import pyarrow.fs as pafs

# S3's CopyObject, which pyarrow's S3FileSystem.move issues, refuses sources over 5 GiB
# ("The specified copy source is larger than the maximum allowable size"). Larger
# objects are written straight to their key instead of via a temporary name.
MAX_SERVER_COPY_BYTES = 5 * 1024**3
# Every S3 request gets a timeout, so a stalled endpoint fails the read (one reject or a
# retried task) instead of hanging a task: 10 s to connect, 60 s request timeout (pyarrow
# documents request_timeout as the socket read timeout on Windows and macOS; on Linux it
# is passed to the AWS SDK but pyarrow says it is ignored there). The SDK's default
# retry strategy (3 attempts) applies on top. pyarrow's URI query cannot set these.
S3_CONNECT_TIMEOUT_S = 10.0
S3_REQUEST_TIMEOUT_S = 60.0
# Object stores reached through fsspec: URL scheme -> (pip package, shardforge extra).
FSSPEC_SCHEMES = {
    "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"), "abfss": ("adlfs", "azure"),
    "hf": ("huggingface_hub", "hf"),
}


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

        Readers never see a partial file: on a local disk the file is fsynced, renamed
        atomically and its directory fsynced (:func:`replace_durably`), so a power loss
        leaves the old file or the whole new one; on an object store the temporary
        object is copied into place whole (a PUT or copy is atomic and durable when it
        returns: there is nothing to fsync). S3 objects over
        :data:`MAX_SERVER_COPY_BYTES` are written to their key directly (an S3 object
        appears only when its upload completes). A failed write removes its temporary.
        """
        if self._direct_write(len(data)):
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
            return
        self._ensure_parent()
        tmp = self.tmp_sibling()
        try:
            if self.is_local:
                with open(tmp.path, "wb") as f:
                    f.write(data)
                replace_durably(tmp.path, self.path)
            else:
                with tmp.fs.open_output_stream(tmp.path) as f:
                    f.write(data)
                self.fs.move(tmp.path, self.path)
        except BaseException:
            tmp._discard()
            raise

    def upload_file_atomic(self, local_path: str) -> None:
        """Copy a local file here under a temporary name, then rename it into place
        (durably on a local disk, as :meth:`write_bytes_atomic`)."""
        if self.is_local and os.path.abspath(local_path) == os.path.abspath(self.path):
            return
        local = pafs.LocalFileSystem()
        if self._direct_write(os.path.getsize(local_path)):
            pafs.copy_files(local_path, self.path, source_filesystem=local,
                            destination_filesystem=self.fs)
            return
        self._ensure_parent()
        tmp = self.tmp_sibling()
        try:
            pafs.copy_files(local_path, tmp.path, source_filesystem=local,
                            destination_filesystem=tmp.fs)
            if self.is_local:
                replace_durably(tmp.path, self.path)
            else:
                self.fs.move(tmp.path, self.path)
        except BaseException:
            tmp._discard()
            raise

    def _direct_write(self, size: int) -> bool:
        """Whether a ``size``-byte file must skip the temporary name (S3 copy limit)."""
        return isinstance(self.fs, pafs.S3FileSystem) and size > MAX_SERVER_COPY_BYTES

    def _ensure_parent(self) -> None:
        """Create the parent directory on a local disk, so writes there need no
        ``makedirs`` first, as on an object store (where directories are implicit)."""
        if self.is_local:
            self.fs.create_dir(posixpath.dirname(self.path), recursive=True)

    def _discard(self) -> None:
        """Best-effort removal of a temporary file after a failed write."""
        try:
            self.delete()
        except OSError:
            pass

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


def fsync_path(path: str) -> None:
    """Flush a local file's (or directory's) data and metadata to stable storage."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: str, dest: str) -> None:
    """Rename the local file ``tmp`` to ``dest`` so that a power loss cannot leave ``dest``
    renamed but empty: fsync ``tmp``, ``os.replace`` it, then fsync ``dest``'s directory
    (which makes the rename itself durable). Both paths must be on one local filesystem.

    Every local write-then-rename in shardforge goes through this function.
    """
    fsync_path(tmp)
    os.replace(tmp, dest)
    fsync_path(os.path.dirname(os.path.abspath(dest)))


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
    if urlsplit(url).fragment or url.endswith("#"):
        # pyarrow would drop everything after '#', the endpoint query included, and
        # silently talk to AWS instead of the endpoint given.
        raise ValueError(f"storage location {url!r} contains '#': write it as %23")
    if scheme.lower() in FSSPEC_SCHEMES:
        return _fsspec_location(url, scheme.lower())
    try:
        fs, path = pafs.FileSystem.from_uri(url)
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot open storage location {url!r}: {exc}; use a local path "
                         f"or an s3://, {', '.join(f'{s}://' for s in FSSPEC_SCHEMES)} "
                         "URL") from exc
    base, query = _split_query(url)
    base = base.rstrip("/")
    return Location(_with_timeouts(fs), path.rstrip("/"), f"{base}?{query}" if query else base)


def _fsspec_location(url: str, scheme: str) -> Location:
    """A :data:`FSSPEC_SCHEMES` URL as a :class:`Location` on the fsspec filesystem, its
    query as the filesystem's options. ValueError naming the package to install when the
    scheme's fsspec implementation (or fsspec) is missing, or naming the options when the
    filesystem refuses them."""
    package, extra = FSSPEC_SCHEMES[scheme]
    fix = f"pip install {package} (or pip install 'shardforge[{extra}]')"
    try:
        import fsspec
    except ImportError:
        raise ValueError(f"storage location {url!r} needs fsspec and {package}, which are "
                         f"not installed: {fix}") from None
    try:
        cls = fsspec.get_filesystem_class(scheme)
    except ImportError as exc:
        raise ValueError(f"storage location {url!r} needs the {package} package, which is not "
                         f"installed ({exc}): {fix}, on the driver and every Ray "
                         "worker") from None
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        fs = cls(**options)
    except (TypeError, ValueError, OSError) as exc:
        raise ValueError(f"cannot open storage location {url!r} with {package} "
                         f"({type(exc).__name__}: {exc}); check the options in its query: "
                         f"{sorted(options) or 'none given'}") from exc
    path = cls._strip_protocol(f"{scheme}://{unquote(parts.netloc + parts.path)}")
    base, query = _split_query(url)
    base = base.rstrip("/")
    return Location(pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path.rstrip("/"),
                    f"{base}?{query}" if query else base)


def _with_timeouts(fs: pafs.FileSystem) -> pafs.FileSystem:
    """An S3 filesystem with :data:`S3_CONNECT_TIMEOUT_S` / :data:`S3_REQUEST_TIMEOUT_S`
    where the URI left them unset (its other options kept); other filesystems as given."""
    if not isinstance(fs, pafs.S3FileSystem):
        return fs
    options = dict(fs.__reduce__()[1][0])
    if options.get("connect_timeout", -1) < 0:
        options["connect_timeout"] = S3_CONNECT_TIMEOUT_S
    if options.get("request_timeout", -1) < 0:
        options["request_timeout"] = S3_REQUEST_TIMEOUT_S
    return pafs.S3FileSystem._reconstruct(options)


def _split_query(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), parts.query


def _join_url(url: str, *parts: str) -> str:
    """``url`` with path ``parts`` appended; in a URL they are percent-encoded, so that
    :func:`resolve` (which decodes) gives back exactly these path parts."""
    if "://" not in url:
        return os.path.join(url, *parts)
    base, query = _split_query(url)
    joined = posixpath.join(base.rstrip("/"), *(quote(p, safe="/") for p in parts))
    return f"{joined}?{query}" if query else joined


def _parent_url(url: str) -> str:
    if "://" not in url:
        return os.path.dirname(url)
    parts = urlsplit(url)
    # netloc and path together: the parent of s3://bucket is the store root s3://,
    # matching the parent of its fs path 'bucket', which is ''.
    full = posixpath.dirname(f"{parts.netloc}{parts.path}".rstrip("/"))
    parent = f"{parts.scheme}://{full}"
    return f"{parent}?{parts.query}" if parts.query else parent
