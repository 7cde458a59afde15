"""ImageNet (ILSVRC2012) validation labels: the devkit's ground truth, or a labels CSV.

The validation archive holds ``ILSVRC2012_val_00000001.JPEG`` ... with no label. Labels
come from a file beside it, looked for in this order:

* ``ILSVRC2012_val_labels.csv``: one ``filename,wnid`` line per image (a header line
  ``filename,wnid`` is allowed; the file name with or without its extension);
* ``ILSVRC2012_devkit_t12.tar.gz`` (the devkit of the ImageNet download):
  ``data/ILSVRC2012_validation_ground_truth.txt`` holds one 1-based ILSVRC2012_ID per
  line, line *i* for ``ILSVRC2012_val_{i:08d}``, and ``data/meta.mat`` maps the IDs of
  the 1,000 leaf synsets (``num_children == 0``) to WNIDs, as torchvision's
  ``parse_devkit_archive`` reads them. Reading ``meta.mat`` needs scipy
  (``pip install 'shardforge[imagenet]'``).

Every problem raises :class:`LabelError` (a ValueError) naming the file, what is wrong and
the fix.
"""

from __future__ import annotations

import csv
import io
import posixpath
import tarfile
import zlib
from dataclasses import dataclass

from shardforge.storage import Location

DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
LABELS_CSV = "ILSVRC2012_val_labels.csv"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
META = "data/meta.mat"
MAX_LABEL_FILE = 256 << 20      # the devkit is 2.5 MB; a CSV of 50,000 lines about 1.5 MB


class LabelError(ValueError):
    """A labels file that cannot be used; the message names the file, problem and fix."""


@dataclass(frozen=True)
class ValLabels:
    """Validation labels: ``by_stem`` maps an image's name without extension
    (``ILSVRC2012_val_00000001``) to its WNID; ``wnids`` are the classes the file knows,
    sorted (the devkit's 1,000 leaf synsets, or the CSV's distinct WNIDs); ``file`` the
    labels file's name, for messages."""

    by_stem: dict[str, str]
    wnids: list[str]
    file: str


def find_labels(folder: Location) -> Location | None:
    """The labels file beside the validation archive in ``folder`` (the CSV first, then
    the devkit), or None when neither is there."""
    for name in (LABELS_CSV, DEVKIT):
        loc = folder.join(name)
        if loc.exists():
            return loc
    return None


def load_labels(loc: Location) -> ValLabels:
    """Read a labels file found by :func:`find_labels` (CSV or devkit, by name)."""
    size = loc.size()
    if size is not None and size > MAX_LABEL_FILE:
        raise LabelError(f"{loc.url}: {size:,} bytes is too large for a labels file "
                         f"(at most {MAX_LABEL_FILE:,}); give the ImageNet devkit or a "
                         "filename,wnid CSV")
    data = loc.read_bytes()
    name = posixpath.basename(loc.path)
    if name.endswith(".csv"):
        by_stem = parse_labels_csv(data, name)
        return ValLabels(by_stem, sorted(set(by_stem.values())), name)
    idx_to_wnid, truth = parse_devkit(data, name)
    by_stem = {}
    for i, idx in enumerate(truth, 1):
        if idx not in idx_to_wnid:
            raise LabelError(f"{name}: line {i} of {GROUND_TRUTH} names ILSVRC2012_ID {idx}, "
                             f"which is not a leaf synset of {META}; the devkit is damaged or "
                             f"not ILSVRC2012's: download it again, or give {LABELS_CSV}")
        by_stem[f"ILSVRC2012_val_{i:08d}"] = idx_to_wnid[idx]
    return ValLabels(by_stem, sorted(idx_to_wnid.values()), name)


def parse_labels_csv(data: bytes, name: str) -> dict[str, str]:
    """``{image stem: wnid}`` of a ``filename,wnid`` CSV (optional header). A line with
    other than two fields, an empty field, or a name given twice with two WNIDs raises
    :class:`LabelError` naming the line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{name}: not UTF-8 text ({exc}); write it as UTF-8 lines "
                         "'filename,wnid'") from exc
    out: dict[str, str] = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        fields = [f.strip() for f in row]
        if lineno == 1 and [f.lower() for f in fields] == ["filename", "wnid"]:
            continue
        if len(fields) != 2 or not all(fields):
            raise LabelError(f"{name}: line {lineno} is {','.join(row)!r}, not "
                             "'filename,wnid'; fix that line")
        stem = _stem(fields[0])
        if out.get(stem, fields[1]) != fields[1]:
            raise LabelError(f"{name}: line {lineno} labels {fields[0]} {fields[1]}, but an "
                             f"earlier line labels it {out[stem]}; keep one line per image")
        out[stem] = fields[1]
    if not out:
        raise LabelError(f"{name} has no 'filename,wnid' lines; write one line per "
                         "validation image")
    return out


def parse_devkit(data: bytes, name: str) -> tuple[dict[int, str], list[int]]:
    """``({ILSVRC2012_ID: wnid} of the leaf synsets, [ground-truth ID per val image])``
    from the devkit archive's bytes."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            meta = _member_bytes(tar, META, name)
            truth_text = _member_bytes(tar, GROUND_TRUTH, name)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise LabelError(f"{name}: not a readable tar.gz ({type(exc).__name__}: {exc}); "
                         f"download the devkit again, or give {LABELS_CSV} "
                         "(filename,wnid)") from exc
    truth = []
    for lineno, line in enumerate(truth_text.decode("ascii", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            truth.append(int(line))
        except ValueError:
            raise LabelError(f"{name}: line {lineno} of {GROUND_TRUTH} is {line!r}, not an "
                             "ILSVRC2012_ID; download the devkit again") from None
    return _leaf_synsets(meta, name), truth


def _leaf_synsets(meta: bytes, name: str) -> dict[int, str]:
    """``{ILSVRC2012_ID: WNID}`` of the synsets without children in ``meta.mat``."""
    try:
        import scipy.io
    except ImportError:
        raise LabelError(f"reading {META} in {name} needs scipy: pip install "
                         f"'shardforge[imagenet]' (or scipy), or give {LABELS_CSV} "
                         "(filename,wnid) instead") from None
    try:
        synsets = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
        rows = [(int(s["ILSVRC2012_ID"]), str(s["WNID"]), int(s["num_children"]))
                for s in synsets.reshape(-1)]
    except (ValueError, KeyError, TypeError, IndexError, OSError) as exc:
        raise LabelError(f"{name}: {META} has no readable 'synsets' table "
                         f"({type(exc).__name__}: {exc}); download the devkit again, or give "
                         f"{LABELS_CSV}") from exc
    return {idx: wnid for idx, wnid, children in rows if children == 0}


def _member_bytes(tar: tarfile.TarFile, suffix: str, name: str) -> bytes:
    for member in tar:
        if member.isfile() and (member.name == suffix or member.name.endswith("/" + suffix)):
            f = tar.extractfile(member)
            if f is not None:
                return f.read()
    raise LabelError(f"{name} holds no {suffix}; it is not the ILSVRC2012 devkit "
                     f"({DEVKIT}): download it again, or give {LABELS_CSV} (filename,wnid)")


def _stem(filename: str) -> str:
    """``ILSVRC2012_val_00000001`` of ``ILSVRC2012_val_00000001.JPEG`` or of itself."""
    base = posixpath.basename(filename)
    return base.rsplit(".", 1)[0] if "." in base else base
