"""Container faults (tar, parquet, class folders) and stale sources (issue #13, items 2, 4, 7).

Each fault is read through the real source code (``plan_source`` / ``read_shard``) and,
where the shard matters, built with ``ingest.shard.build_shard`` (the Ray task's body, in
this process); the good samples are read back with tarfile, webdataset and pyarrow. Every
plan and read runs under :func:`within`, so a hang fails the test instead of blocking it.
One stale-source case runs the whole job (``run_ingest``) on a private 2-CPU Ray.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import tarfile
import threading
from dataclasses import asdict

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset
from PIL import Image

from shardforge.build.config import IngestConfig, ShardJob
from shardforge.build.shard import build_shard, shard_paths
from shardforge.formats.beton import DEFAULT_PAGE_SIZE
from shardforge.formats.image import ImageParams
from shardforge.sources import RawSample, Reject, SourceOptions, plan_source, read_shard
from shardforge.sources import folder as folder_source

BOUND_S = 20.0      # generous: every case here takes well under a second


def within(fn, *args, bound: float = BOUND_S, **kw):
    """``fn(*args, **kw)`` in a daemon thread; fails the test if it does not return in time."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as exc:     # re-raised in the test's thread below
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(bound)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {bound} s (a hang)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def jpeg(value: int, size: tuple[int, int] = (16, 12)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, 40)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read_plan(src: str, options: SourceOptions, kind: str | None = None):
    """(plan, [samples and rejects of every spec]) within the time bound."""
    def go():
        plan = plan_source(src, options, kind)
        return plan, list(plan.rejects) + [x for s in plan.shards for x in read_shard(s, options)]
    return within(go)


def samples_of(items) -> list[RawSample]:
    return [x for x in items if isinstance(x, RawSample)]


def rejects_of(items) -> list[Reject]:
    return [x for x in items if isinstance(x, Reject)]


def build_all(src: str, out: str, options: SourceOptions, kind: str | None = None):
    """Plan and build every shard in this process: (plan, results, rejects as dicts)."""
    job = ShardJob(out, "t", ImageParams(max_resolution=64), options, DEFAULT_PAGE_SIZE)

    def go():
        plan = plan_source(src, options, kind)
        results = [build_shard(spec, job) for spec in plan.shards]
        return plan, results
    plan, results = within(go)
    rejects = [asdict(r) for r in plan.rejects] + [r for res in results for r in res.rejects]
    return plan, results, rejects, job


def out_samples(out: str) -> list[tuple[str, int, dict]]:
    """(key, label, json) of every sample in the output tars, read by webdataset."""
    urls = sorted(os.path.join(out, "wds", n) for n in os.listdir(os.path.join(out, "wds"))
                  if n.endswith(".tar"))
    ds = webdataset.WebDataset(urls, shardshuffle=False).to_tuple("__key__", "cls", "json")
    return [(k, int(c), __import__("json").loads(j)) for k, c, j in ds]


# --- tar ----------------------------------------------------------------------------------


def add(tar: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
        link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mtime = kind, link, 0
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def make_tar(path, samples, fmt=tarfile.USTAR_FORMAT) -> None:
    """``samples``: [(key, label)] good samples, or (name, data, kind, link) raw members."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tarfile.open(path, "w", format=fmt) as tar:
        for s in samples:
            if isinstance(s[1], int):
                key, label = s
                add(tar, f"{key}.jpg", jpeg(label * 20 + 5))
                add(tar, f"{key}.cls", str(label).encode())
            else:
                add(tar, *s)


def good(n: int, prefix: str = "s") -> list[tuple[str, int]]:
    return [(f"{prefix}{i}", i % 3) for i in range(n)]


def member_offset(path, name: str) -> tuple[int, int]:
    """(header offset, data offset) of a member."""
    with tarfile.open(path) as tar:
        m = tar.getmember(name)
        return m.offset, m.offset_data


def test_tar_truncated_mid_member(tmp_path):
    path = tmp_path / "src" / "a-train-0.tar"
    make_tar(path, good(6))
    _, data_at = member_offset(path, "s3.jpg")
    raw = path.read_bytes()
    path.write_bytes(raw[:data_at + 100])             # inside s3.jpg's data
    _plan, items = read_plan(str(tmp_path / "src"), SourceOptions())
    assert [s.origin for s in samples_of(items)] == [f"a-train-0.tar#s{i}" for i in range(3)]
    (rej,) = rejects_of(items)
    assert rej.origin == "a-train-0.tar#s3"
    assert "'s3.jpg'" in rej.reason and "unexpected end of data" in rej.reason


def test_tar_size_field_past_the_data(tmp_path):
    """The last image member's size field claims more bytes than the file holds."""
    path = tmp_path / "src" / "a-train-0.tar"
    make_tar(path, good(4))
    header_at, _ = member_offset(path, "s3.jpg")
    raw = bytearray(path.read_bytes())
    header = tarfile.TarInfo.frombuf(bytes(raw[header_at:header_at + 512]), "utf-8", "strict")
    header.size = 10 * len(raw)
    raw[header_at:header_at + 512] = header.tobuf(tarfile.USTAR_FORMAT)
    path.write_bytes(bytes(raw))
    _plan, items = read_plan(str(tmp_path / "src"), SourceOptions())
    assert [s.origin for s in samples_of(items)] == [f"a-train-0.tar#s{i}" for i in range(3)]
    (rej,) = rejects_of(items)
    assert rej.origin == "a-train-0.tar#s3" and f"byte {header_at}" in rej.reason


def test_tar_corrupt_header_mid_file_is_not_a_silent_end(tmp_path):
    """tarfile stops without an error at an invalid header after offset 0; the reader
    notices and rejects the tail by byte offset (the samples before it are kept)."""
    path = tmp_path / "src" / "a-train-0.tar"
    make_tar(path, good(5))
    header_at, _ = member_offset(path, "s3.jpg")
    raw = bytearray(path.read_bytes())
    raw[header_at:header_at + 512] = b"\x7f" * 512
    path.write_bytes(bytes(raw))
    _plan, items = read_plan(str(tmp_path / "src"), SourceOptions())
    assert [s.origin for s in samples_of(items)] == [f"a-train-0.tar#s{i}" for i in range(3)]
    (rej,) = rejects_of(items)
    assert rej.origin == f"a-train-0.tar@{header_at}" and "invalid header" in rej.reason


@pytest.mark.parametrize("kind,what", [(tarfile.SYMTYPE, "symlink"),
                                       (tarfile.LNKTYPE, "hard link"),
                                       (tarfile.CHRTYPE, "character device")])
def test_tar_special_members_are_never_read(tmp_path, kind, what):
    path = tmp_path / "src" / "a-train-0.tar"
    make_tar(path, good(2) + [("bad.jpg", b"", kind, "/etc/passwd" if kind != tarfile.CHRTYPE
                               else ""), ("bad.cls", b"1")] + good(2, "t"))
    out = str(tmp_path / "out")
    _plan, results, rejects, _job = build_all(str(tmp_path / "src"), out, SourceOptions())
    assert len(rejects) == 1
    assert rejects[0]["origin"] == "a-train-0.tar#bad"
    assert f"bad.jpg is a {what} member, not read" in rejects[0]["reason"]
    got = out_samples(out)
    assert sorted(j["origin"] for _k, _c, j in got) == [
        "a-train-0.tar#s0", "a-train-0.tar#s1", "a-train-0.tar#t0", "a-train-0.tar#t1"]


def test_tar_long_pax_names_are_read(tmp_path):
    long_key = "/".join(["d" * 60] * 5) + "/" + "é" * 40 + "x" * 120
    path = tmp_path / "src" / "a-train-0.tar"
    make_tar(path, good(1) + [(f"{long_key}.jpg", jpeg(77)), (f"{long_key}.cls", b"2")],
             fmt=tarfile.PAX_FORMAT)
    out = str(tmp_path / "out")
    _plan, _results, rejects, _job = build_all(str(tmp_path / "src"), out, SourceOptions())
    assert rejects == []
    got = {j["origin"]: (k, c) for k, c, j in out_samples(out)}
    key, label = got[f"a-train-0.tar#{long_key}"]
    assert label == 2 and len(key) <= 91 and "." not in key and "/" not in key


def test_tar_duplicate_keys_second_rejected(tmp_path):
    """s1 again after s2 (non-adjacent), and s3's two members repeated back to back."""
    path = tmp_path / "src" / "a-train-0.tar"
    make_tar(path, [("s0", 0), ("s1", 1), ("s2", 2), ("s1", 0), ("s3", 1), ("s3", 2)])
    out = str(tmp_path / "out")
    _plan, _results, rejects, _job = build_all(str(tmp_path / "src"), out, SourceOptions())
    assert sorted(r["origin"] for r in rejects) == ["a-train-0.tar#s1", "a-train-0.tar#s3"]
    for r in rejects:
        assert "duplicate sample key" in r["reason"] and "the first" in r["reason"]
    got = out_samples(out)
    keys = [k for k, _c, _j in got]
    assert len(keys) == len(set(keys)) == 4
    assert {j["origin"]: c for _k, c, j in got} == {"a-train-0.tar#s0": 0, "a-train-0.tar#s1": 1,
                                                   "a-train-0.tar#s2": 2, "a-train-0.tar#s3": 1}


# --- parquet ------------------------------------------------------------------------------


def make_parquet(path, n: int, first: int = 0, row_group: int = 4, keys=None, **columns) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = {"image": [jpeg((first + i) % 250) for i in range(n)],
            "label": [(first + i) % 3 for i in range(n)]}
    if keys is not None:
        data["id"] = keys
    data.update(columns)
    pq.write_table(pa.table(data), path, row_group_size=row_group, compression="none")


def test_parquet_corrupt_page_rejects_that_row_group_only(tmp_path):
    src = tmp_path / "src"
    make_parquet(src / "a.parquet", 12)          # row groups of rows 0-3, 4-7, 8-11
    meta = pq.ParquetFile(src / "a.parquet").metadata
    page_at = meta.row_group(1).column(0).data_page_offset
    raw = bytearray((src / "a.parquet").read_bytes())
    raw[page_at:page_at + 32] = b"\xff" * 32
    (src / "a.parquet").write_bytes(bytes(raw))
    options = SourceOptions(shard_size=6)
    out = str(tmp_path / "out")
    _plan, _results, rejects, _job = build_all(str(src), out, options)
    assert sorted(r["origin"] for r in rejects) == [f"a.parquet#{r}" for r in range(4, 8)]
    assert all("row group 1" in r["reason"] for r in rejects)
    got = sorted(j["origin"] for _k, _c, j in out_samples(out))
    assert got == sorted(f"a.parquet#{r}" for r in (0, 1, 2, 3, 8, 9, 10, 11))


def test_parquet_corrupt_footer_rejects_that_file(tmp_path):
    src = tmp_path / "src"
    make_parquet(src / "a.parquet", 5)
    make_parquet(src / "b.parquet", 3, first=5)
    raw = (src / "a.parquet").read_bytes()
    (src / "a.parquet").write_bytes(raw[:-40] + b"\x00" * 36 + b"PAR1")
    plan, items = read_plan(str(src), SourceOptions())
    (rej,) = rejects_of(items)
    assert rej.origin == "a.parquet" and "unreadable parquet file" in rej.reason
    assert [s.origin for s in samples_of(items)] == [f"b.parquet#{r}" for r in range(3)]
    # The only file damaged: one clear line, not a traceback from pyarrow.
    with pytest.raises(ValueError, match=r"no usable parquet file \(a.parquet: unreadable"):
        within(plan_source, str(src / "a.parquet"), SourceOptions())


def test_parquet_missing_column_rejects_that_file(tmp_path):
    src = tmp_path / "src"
    make_parquet(src / "a.parquet", 3)
    pq.write_table(pa.table({"image": [jpeg(1)], "labels": [1]}), src / "b.parquet")
    _plan, items = read_plan(str(src), SourceOptions())
    (rej,) = rejects_of(items)
    assert rej.origin == "b.parquet" and "no column(s) ['label']" in rej.reason
    assert "--label-column" in rej.reason
    assert len(samples_of(items)) == 3


def test_parquet_wrong_dtypes_reject_rows(tmp_path):
    src = tmp_path / "src"
    pq.write_table(pa.table({"image": [jpeg(1), jpeg(2), jpeg(3)], "label": ["1", "x", "2"]}),
                   os.path.join(tmp_path, "a.parquet"))
    os.makedirs(src)
    shutil.move(os.path.join(tmp_path, "a.parquet"), src / "a.parquet")
    pq.write_table(pa.table({"image": [5, 6], "label": [1, 2]}), src / "b.parquet")
    _plan, items = read_plan(str(src), SourceOptions())
    rejects = rejects_of(items)
    assert [r.origin for r in rejects] == ["a.parquet#0", "a.parquet#1", "a.parquet#2",
                                           "b.parquet#0", "b.parquet#1"]
    assert "is not an integer" in rejects[0].reason and "holds no bytes" in rejects[3].reason
    assert samples_of(items) == []


def test_parquet_one_huge_row_group_read_once_in_batches(tmp_path, monkeypatch):
    """One row group of 300 rows cut into 19 shards: every row read once, in order, and
    never more than a batch of rows decoded at a time."""
    from shardforge.sources import parquet as parquet_source

    src = tmp_path / "src"
    make_parquet(src / "a.parquet", 300, row_group=300)
    assert pq.ParquetFile(src / "a.parquet").num_row_groups == 1
    largest = []
    real = pq.ParquetFile.iter_batches

    def spy(self, batch_size=65536, **kw):
        for batch in real(self, batch_size=batch_size, **kw):
            largest.append(batch.num_rows)
            yield batch
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    _plan, items = read_plan(str(src), SourceOptions(shard_size=16))
    assert [s.origin for s in samples_of(items)] == [f"a.parquet#{r}" for r in range(300)]
    assert [s.label for s in samples_of(items)] == [r % 3 for r in range(300)]
    assert max(largest) <= parquet_source.BATCH_ROWS


def test_parquet_duplicate_key_column_values(tmp_path):
    """Key 'k1' at rows 1 and 9 of one file (different shards): row 9 rejected, naming
    row 1; the same value in another file is another sample key (FILE#VALUE)."""
    src = tmp_path / "src"
    keys = [f"k{i}" for i in range(12)]
    keys[9] = "k1"
    make_parquet(src / "a.parquet", 12, keys=keys)
    make_parquet(src / "b.parquet", 2, first=12, keys=["k1", "k2"])
    options = SourceOptions(shard_size=4, key_column="id")
    out = str(tmp_path / "out")
    plan, _results, rejects, _job = build_all(str(src), out, options)
    assert [(r["origin"], r["split"]) for r in rejects] == [("a.parquet#9", "train")]
    assert "first read from a.parquet#1" in rejects[0]["reason"]
    assert [s.skip for s in plan.shards] == [(), (), (9,), ()]
    got = out_samples(out)
    keys_out = [k for k, _c, _j in got]
    assert len(got) == 13 and len(set(keys_out)) == 13
    assert sum(j["origin"] == "a.parquet#k1" for _k, _c, j in got) == 1
    table = pq.read_table(os.path.join(out, "_work", "train-000002.parquet"))
    assert table["origin"].to_pylist() == ["a.parquet#k8", "a.parquet#k10", "a.parquet#k11"]


# --- class folders ------------------------------------------------------------------------


def tree(root) -> None:
    for cls in ("a", "b"):
        for i in range(3):
            write(root / cls / f"{cls}{i}.jpg", jpeg(i * 30 + (cls == "b") * 100))


def folder_case(tmp_path):
    root = tmp_path / "src"
    tree(root)
    return root


def test_folder_fifo_rejected_by_type(tmp_path):
    root = folder_case(tmp_path)
    os.mkfifo(root / "a" / "pipe.jpg")
    _plan, items = read_plan(str(root), SourceOptions())
    (rej,) = rejects_of(items)
    assert rej.origin == "a/pipe.jpg" and "FIFO" in rej.reason
    assert len(samples_of(items)) == 6


def test_folder_devices_and_sockets_rejected_by_type(tmp_path):
    """A real character device node (``mknod``, as root) and a bound unix socket."""
    root = folder_case(tmp_path)
    if os.geteuid() != 0:
        pytest.skip("mknod of a device node needs root")
    os.mknod(root / "a" / "dev.jpg", stat.S_IFCHR | 0o600, os.makedev(1, 3))   # /dev/null
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "b" / "sock.jpg"))
    try:
        _plan, items = read_plan(str(root), SourceOptions())
    finally:
        sock.close()
    reasons = {r.origin: r.reason for r in rejects_of(items)}
    assert set(reasons) == {"a/dev.jpg", "b/sock.jpg"}
    assert "character device" in reasons["a/dev.jpg"] and "socket" in reasons["b/sock.jpg"]
    assert len(samples_of(items)) == 6


def test_folder_symlinks_out_of_the_tree_rejected_inside_followed(tmp_path):
    root = folder_case(tmp_path)
    outside = tmp_path / "elsewhere"
    write(outside / "x.jpg", jpeg(9))
    write(outside / "cls" / "y.jpg", jpeg(10))
    os.symlink(outside / "x.jpg", root / "a" / "out.jpg")
    os.symlink(outside / "cls", root / "c")                  # a whole class folder
    os.symlink(root / "b" / "b0.jpg", root / "a" / "in.jpg")  # inside: followed
    os.symlink(root / "missing.jpg", root / "a" / "broken.jpg")
    plan, items = read_plan(str(root), SourceOptions())
    reasons = {r.origin: r.reason for r in rejects_of(items)}
    assert set(reasons) == {"a/out.jpg", "c", "a/broken.jpg"}
    assert "outside the source root" in reasons["a/out.jpg"] and str(outside) in reasons["c"]
    assert "broken symlink" in reasons["a/broken.jpg"]
    got = {s.origin: s for s in samples_of(items)}
    assert "a/in.jpg" in got and got["a/in.jpg"].data == (root / "b" / "b0.jpg").read_bytes()
    assert plan.classes == ["a", "b"] and len(got) == 7


def test_folder_symlink_loop_plans_in_bounded_time(tmp_path):
    root = folder_case(tmp_path)
    os.symlink("..", root / "a" / "up1")
    os.symlink("..", root / "a" / "up2")
    os.symlink("../b", root / "a" / "sideways")
    _plan, items = read_plan(str(root), SourceOptions())
    reasons = {r.origin: r.reason for r in rejects_of(items)}
    assert set(reasons) == {"a/up1", "a/up2", "a/sideways"}
    assert all("already listed" in r for r in reasons.values())
    assert sorted(s.origin for s in samples_of(items)) == sorted(
        f"{c}/{c}{i}.jpg" for c in "ab" for i in range(3))
    # the same for a directory of tars (kind detection and listing), and a FIFO named .tar
    tars = tmp_path / "tars"
    make_tar(tars / "x-train-0.tar", good(2))
    os.symlink("..", tars / "up")
    os.mkfifo(tars / "y-train-1.tar")
    plan, items = read_plan(str(tars), SourceOptions())
    assert plan.kind == "wds" and len(samples_of(items)) == 2
    (rej,) = rejects_of(items)
    assert rej.origin == "y-train-1.tar" and rej.reason.startswith("a FIFO (named pipe)")


def test_folder_file_replaced_or_removed_after_planning(tmp_path):
    """Between plan and read: a0.jpg becomes a FIFO (would block a plain open forever),
    a1.jpg is deleted, a2.jpg becomes a symlink out of the tree."""
    root = folder_case(tmp_path)
    write(tmp_path / "secret.jpg", jpeg(3))
    options = SourceOptions(seed=None)
    plan = within(plan_source, str(root), options)
    os.remove(root / "a" / "a0.jpg")
    os.mkfifo(root / "a" / "a0.jpg")
    os.remove(root / "a" / "a1.jpg")
    os.remove(root / "a" / "a2.jpg")
    os.symlink(tmp_path / "secret.jpg", root / "a" / "a2.jpg")
    items = within(lambda: [x for s in plan.shards for x in read_shard(s, options)])
    reasons = {r.origin: r.reason for r in rejects_of(items)}
    assert set(reasons) == {"a/a0.jpg", "a/a1.jpg", "a/a2.jpg"}
    assert "FIFO" in reasons["a/a0.jpg"] and "No such file" in reasons["a/a1.jpg"]
    assert "outside the source root" in reasons["a/a2.jpg"]
    assert len(samples_of(items)) == 3


def test_folder_unlistable_folder_rejected(tmp_path, monkeypatch):
    """Root reads every folder, so a folder that cannot be listed is simulated: os.scandir
    raises PermissionError for class folder b (what a chmod 000 folder gives a user)."""
    root = folder_case(tmp_path)
    real = os.scandir

    def scandir(path):
        if os.path.basename(str(path)) == "b":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(folder_source.os, "scandir", scandir)
    plan, items = read_plan(str(root), SourceOptions())
    (rej,) = rejects_of(items)
    assert rej.origin == "b" and "cannot be listed" in rej.reason
    assert plan.classes == ["a", "b"] and len(samples_of(items)) == 3


# --- stale sources (content-aware resume) -------------------------------------------------


def reused(results) -> dict[int, bool]:
    return {r.index: r.reused for r in results}


def test_changed_image_rebuilds_its_shard_only(tmp_path):
    """A replaced image (new file renamed over the old) and a fixed bad image (rewritten in
    place, an mtime later) rebuild exactly their shards; an unchanged tree reuses all."""
    root = folder_case(tmp_path)
    write(root / "b" / "bad.jpg", b"not an image")
    options = SourceOptions(shard_size=2, seed=None)
    out = str(tmp_path / "out")
    plan, results, rejects, job = build_all(str(root), out, options)
    assert [r["origin"] for r in rejects] == ["b/bad.jpg"]
    where = {rel: spec.index for spec in plan.shards for rel, _ in spec.items}
    # unchanged: every shard reused, same bytes
    before = {p: open(p, "rb").read() for p in (shard_paths(job, s)["tar"].path
                                                for s in plan.shards)}
    _plan, again, _rejects, _job = build_all(str(root), out, options)
    assert all(reused(again).values())
    assert {p: open(p, "rb").read() for p in before} == before
    # change two files
    new_a1 = jpeg(222, (20, 20))
    write(tmp_path / "new.jpg", new_a1)
    os.replace(tmp_path / "new.jpg", root / "a" / "a1.jpg")
    st = os.stat(root / "b" / "bad.jpg")
    with open(root / "b" / "bad.jpg", "wb") as f:       # same inode
        f.write(jpeg(111))
    os.utime(root / "b" / "bad.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    _plan, third, rejects, _job = build_all(str(root), out, options)
    changed = {where["a/a1.jpg"], where["b/bad.jpg"]}
    assert {i for i, r in reused(third).items() if not r} == changed
    assert rejects == []
    got = {j["origin"]: j for _k, _c, j in out_samples(out)}
    assert "b/bad.jpg" in got and len(got) == 7
    with tarfile.open(shard_paths(job, plan.shards[where["a/a1.jpg"]])["tar"].path) as tar:
        key = got["a/a1.jpg"]["key"]
        data = tar.extractfile(f"{key}.jpg").read()
    assert Image.open(io.BytesIO(data)).size == (20, 20)     # the new image, not the old


def test_changed_tar_or_parquet_rebuilds_only_its_shards(tmp_path):
    tars = tmp_path / "tars"
    for i in range(3):
        make_tar(tars / f"x-train-{i}.tar", good(2, f"p{i}_"))
    pqs = tmp_path / "pqs"
    make_parquet(pqs / "a.parquet", 8)
    make_parquet(pqs / "b.parquet", 8, first=8)
    for src, opts in ((tars, SourceOptions()), (pqs, SourceOptions(shard_size=4))):
        out = str(tmp_path / f"out-{src.name}")
        _plan, first, _r, _job = build_all(str(src), out, opts)
        assert not any(reused(first).values())
        _plan, second, _r, _job = build_all(str(src), out, opts)
        assert all(reused(second).values())
        if src is tars:
            make_tar(tars / "x-train-1.tar", good(3, "p1_"))
            expect = {1}
        else:
            make_parquet(pqs / "b.parquet", 8, first=50)
            expect = {2, 3}
        _plan, third, _r, _job = build_all(str(src), out, opts)
        assert {i for i, r in reused(third).items() if not r} == expect
    tar_rows = pq.read_table(os.path.join(tmp_path, "out-tars", "_work", "train-000001.parquet"))
    assert tar_rows["origin"].to_pylist() == [f"x-train-1.tar#p1_{i}" for i in range(3)]
    pq_rows = pq.read_table(os.path.join(tmp_path, "out-pqs", "_work", "train-000003.parquet"))
    assert pq_rows["label"].to_pylist() == [(50 + r) % 3 for r in range(4, 8)]


@pytest.mark.usefixtures("ray_local")
def test_run_ingest_rerun_picks_up_a_fixed_image(tmp_path):
    """The whole job: a bad image is rejected; fixed at the same path, the rerun accepts
    it (not 'nothing to do'), rebuilding one shard and reusing the other (parts kept:
    without them every shard is rebuilt, to the same bytes)."""
    from shardforge.build.job import run_ingest

    root = folder_case(tmp_path)
    write(root / "a" / "zz.jpg", b"garbage")
    config = IngestConfig(source=str(root), name="t", out=str(tmp_path / "out"),
                          image=ImageParams(max_resolution=64), keep_parts=True,
                          source_options=SourceOptions(shard_size=4, seed=None))
    first = run_ingest(config, log=io.StringIO())
    assert first["samples"] == 6 and first["rejects"]["count"] == 1
    write(root / "a" / "zz.jpg", jpeg(42))
    os.utime(root / "a" / "zz.jpg", ns=(0, 10**18))
    log = io.StringIO()
    second = run_ingest(config, log=log)
    assert second["samples"] == 7 and second["rejects"]["count"] == 0
    assert second["shards_reused"] == 1
    origins = sorted(j["origin"] for _k, _c, j in out_samples(config.out))
    assert "a/zz.jpg" in origins and len(origins) == 7


@pytest.mark.usefixtures("ray_local")
def test_parent_dataset_stamps_and_duplicate_keys(tmp_path):
    """A variant's parent: each spec's stamp follows the parent's recorded tar sha256, and
    a key that appears twice in the parent's index is read once (the second rejected)."""
    import json

    from shardforge.build.job import run_ingest
    from shardforge.sources import dataset as dataset_source

    root = folder_case(tmp_path)
    out = str(tmp_path / "parent")
    run_ingest(IngestConfig(source=str(root), name="p", out=out,
                            image=ImageParams(max_resolution=64),
                            source_options=SourceOptions(shard_size=3, seed=None)),
               log=io.StringIO())
    plan = within(dataset_source.plan, out, SourceOptions())
    assert plan.rejects == [] and len(plan.shards) == 2 and all(s.stamp for s in plan.shards)
    summary_path = os.path.join(out, "summary.json")
    summary = json.load(open(summary_path))
    summary["formats"]["wds"]["train"][1]["sha256"] = "0" * 64
    with open(summary_path, "w") as f:
        json.dump(summary, f)
    restamped = within(dataset_source.plan, out, SourceOptions())
    assert [a.stamp == b.stamp for a, b in zip(plan.shards, restamped.shards, strict=True)] == [True, False]
    index = pq.read_table(os.path.join(out, "index.parquet")).to_pylist()
    index[4]["key"] = index[1]["key"]          # the same key in both parent tars
    pq.write_table(pa.Table.from_pylist(index), os.path.join(out, "index.parquet"))
    dup = within(dataset_source.plan, out, SourceOptions())
    (rej,) = dup.rejects
    assert "duplicate sample key" in rej.reason and index[1]["shard"] in rej.reason
    keys = [it[3] for s in dup.shards for it in s.items]
    assert len(keys) == len(set(keys)) == 5
    got = [x for s in dup.shards for x in read_shard(s, SourceOptions())]
    assert len(samples_of(got)) == 5 and rejects_of(got) == []
