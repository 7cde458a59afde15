#!/usr/bin/env python
"""Build the demo card and every demo variant card, and write the sha256 of every output file.

    python scripts/output_digests.py HOME OUT_JSON [--cards-src DIR] [--only CARD ...]

HOME is a fresh catalog home (it must not exist or be empty). Each card is built through
the ``shardforge`` CLI run as a subprocess (``shardforge build NAME --cards DIR --home
HOME``, then ``shardforge catalog show NAME --home HOME --json`` for its output directory),
so the same script checks any revision: run it with ``PYTHONPATH=CHECKOUT/src`` and it builds
with that checkout's code and cards (``CHECKOUT/datasets``, found from the imported
``shardforge`` package). OUT_JSON gets::

    {"cards": {CARD: {RELATIVE_PATH: SHA256, ...}, ...},
     "output_dirs": {CARD: "datasets/CARD/KEY", ...},
     "versions": {"python": ..., "numpy": ..., ...},
     "canonical_json": {...what the JSON files' canonical form drops (see below)},
     "fixtures": {"observer_state_sha256": ...}, "seconds": ...}

Every file under a build's output directory but ``catalog-entry.json`` (the catalog's record
of the build, written when it is registered) is hashed byte for byte, except the JSON files
the builds write (summary.json, _work/*.json shard manifests): their sha256 is that of a
canonical form without the fields that legitimately depend on time or location
(VOLATILE_KEYS and the HOME rewriting below).

Determinism: the cards are copied into a temporary cards directory, and the two that name
a trained model are pointed at a fixed checkpoint the script writes into
``HOME/fixtures/observer`` (a ``small_cnn`` of width 4, randomly initialised with
``torch.manual_seed(0)``, demo's class order; tests/test_variant_rded.py's fixture):

- demo-plus: ``teacher: recipe:jobs/configs/demo_cpu.yaml`` (trains a model inside the
  build: minutes of CPU) -> ``teacher: fixtures/observer``;
- demo-rded-ipc10: ``observer: data/runs/demo_cpu-demo`` (a run directory from a separate
  training run) -> ``observer: fixtures/observer``.

Nothing else in the cards is changed (no card is shrunk: all six build in ~1.5 minutes on
2 cores). The CLI runs with HOME as its working directory, so the relative
``fixtures/observer`` in the params is the same string in every home (the card hash and
hence the output directory key do not depend on where HOME is). demo-cuda reads its
private key from SHARDFORGE_DEMO_CUDA_KEY: the script sets a fixed test key.

Ray: every build starts its own private local Ray (``shardforge.engine.cluster.
ray_session``: ``ray.init(address="local", _node_ip_address="127.0.0.1")``) and shuts it
down at the end; as in tests/conftest.py the subprocesses get
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (Ray keeps 127.0.0.1 instead of swapping in the
routable address) and no RAY_ADDRESS (never join someone else's cluster). Each CLI call
runs in its own process group; when it overruns its timeout the script kills that group
only (what this script started).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CARDS = ("demo", "demo-64", "demo-cuda", "demo-stylized", "demo-plus", "demo-rded-ipc10")
CUDA_KEY_ENV = "SHARDFORGE_DEMO_CUDA_KEY"
CUDA_TEST_KEY = "shardforge-golden-test-key-0123456789"   # fixed test key (>= 16 chars)
FIXTURE = "fixtures/observer"          # relative to HOME (the CLI's working directory)
#: The card lines replaced in the copies (each must occur exactly once).
REWRITES = {
    "demo-plus": (r"teacher: recipe:jobs/configs/demo_cpu\.yaml", f"teacher: {FIXTURE}"),
    "demo-rded-ipc10": (r"observer: data/runs/demo_cpu-demo", f"observer: {FIXTURE}"),
}
CLI = "import sys; from shardforge.cli import main; sys.exit(main(sys.argv[1:]))"
TIMEOUT_S = 1200      # per CLI call

# -- canonical JSON -----------------------------------------------------------------------
# Only the JSON files written by the builds are canonicalised (everything else: the tars,
# .beton, parquet, rejects.jsonl, is hashed byte for byte). A JSON file is parsed and
# re-serialised (sorted keys, no whitespace) with these fields removed or rewritten:
#
# Removed, wherever they occur as an object key (all are run-time measurements or
# identities of this particular run, never decided by the inputs):
VOLATILE_KEYS = {
    "created": "wall-clock time the build finished (summary.json)",
    "seconds": "duration (summary.json: the build; _work/*.json 'result': one shard)",
    "images_per_second": "throughput (summary.json)",
    "stage_seconds": "durations of plan, shards, merge, index (summary.json)",
    "augmentations_per_second": "throughput (demo-plus summary.json)",
    "node": "Ray node id, random per Ray start (_work/*.json 'result')",
    "spec_hash": "a shard's resume key (_work/*.json): sha256 of its ShardSpec, which "
                 "holds the source root's absolute location and 'stamp', a digest of the "
                 "input files' size/mtime/inode listing",
    "job_hash": "summary.json: for ingest builds the sha256 of all shards' spec_hash "
                "(so absolute paths and mtimes again); for demo-plus a digest of the "
                "output files' sha256, which the file digests already cover",
}
# Rewritten (absolute paths): every string value naming a location under HOME:
# - inside a build's output directory HOME/datasets/NAME/KEY -> "<OUT:NAME>/..."
#   (summary.json 'out', 'formats.*.url', 'index.url', 'rejects.url'; a variant's
#   'source', 'parent', 'parent_out' and the parent's urls; demo-plus' reinforce file urls).
#   The key of demo's directory is a hash of its card and its source's absolute location
#   (HOME/sources/demo/...), so it changes with HOME; the other cards' keys do not
#   (their origin is the parent's ref 'demo@v1') and are compared through 'output_dirs'.
# - elsewhere under HOME -> "<HOME>/..." (demo's 'source' HOME/sources/demo/SPECKEY; the
#   resolved observer/teacher file HOME/fixtures/observer/.../state.pt of demo-plus and
#   demo-rded-ipc10, whose sha256 stays in the params).
# Any other absolute path left in a canonical JSON is an error (so a new
# location-dependent field is noticed, not silently hashed).
HOME_TOKEN = "<HOME>"
# Not hashed: OUT/catalog-entry.json, the catalog's record of the build (its version in this
# home, registration time, code version), written by the registration, not by the build.
ENTRY_FILE = "catalog-entry.json"


def canonical_json(data, home: str, outs: dict[str, str]):
    """``data`` with VOLATILE_KEYS removed and absolute locations rewritten (``outs``:
    ``{absolute output directory: card name}``)."""
    if isinstance(data, dict):
        return {k: canonical_json(v, home, outs) for k, v in data.items()
                if k not in VOLATILE_KEYS}
    if isinstance(data, list):
        return [canonical_json(v, home, outs) for v in data]
    if isinstance(data, str):
        for out, name in outs.items():
            if data == out or data.startswith(out + "/"):
                return f"<OUT:{name}>" + data[len(out):]
        if data == home or data.startswith(home + "/"):
            return HOME_TOKEN + data[len(home):]
        if data.startswith("/") and "/" in data[1:]:
            raise ValueError(f"absolute path outside HOME in a build's JSON: {data!r}")
    return data


def sha256_file(path: Path) -> str:
    """Hex sha256 of a local file (the storage layer's streamed hash)."""
    from shardforge.storage import resolve

    return resolve(str(path)).sha256()


def digest_tree(out: Path, home: str, outs: dict[str, str]) -> dict[str, str]:
    """``{relative_path: sha256}`` of every file under ``out`` (canonical form for .json)."""
    digests = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if rel == ENTRY_FILE:
            continue
        if path.suffix == ".json":
            with open(path) as f:
                canon = canonical_json(json.load(f), home, outs)
            blob = json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()
            digests[rel] = hashlib.sha256(blob).hexdigest()
        else:
            digests[rel] = sha256_file(path)
    return digests


# -- environment ----------------------------------------------------------------------------

def versions() -> dict[str, str]:
    """The versions of what decides the bytes (codecs, RNGs, kernels)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for key, dist in (("numpy", "numpy"), ("torch", "torch"), ("torchvision", "torchvision"),
                      ("pillow", "pillow"), ("ffcv", "ffcv"), ("pyarrow", "pyarrow"),
                      ("ray", "ray")):
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = "missing"
    try:   # both opencv-python and -headless may be installed: the imported one counts
        import cv2

        out["opencv"] = cv2.__version__
    except ImportError:
        out["opencv"] = "missing"
    return dict(sorted(out.items()))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)            # a private local Ray, never another cluster
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"   # keep Ray on 127.0.0.1 (conftest.py)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.pop("SHARDFORGE_HOME", None)        # --home is passed explicitly
    env[CUDA_KEY_ENV] = CUDA_TEST_KEY
    env["PYTHONHASHSEED"] = "0"
    return env


def run_cli(args: list[str], cwd: str, log) -> str:
    """Run the shardforge CLI; return its stdout (CalledProcessError text on failure)."""
    cmd = [sys.executable, "-c", CLI, *args]
    print(f"$ shardforge {' '.join(args)}", file=log, flush=True)
    proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)   # our own process group only
        try:
            stdout, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        raise RuntimeError(f"shardforge {' '.join(args)}: timed out after {TIMEOUT_S} s\n"
                           f"{stderr[-3000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"shardforge {' '.join(args)}: exit {proc.returncode}\n"
                           f"{stdout[-3000:]}\n{stderr[-5000:]}")
    return stdout


def default_cards_dir() -> Path:
    """``datasets/`` of the checkout whose ``shardforge`` package is imported."""
    import shardforge

    return Path(shardforge.__file__).resolve().parents[2] / "datasets"


def write_cards(src: Path, dest: Path, cards) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in cards:
        text = (src / f"{name}.yaml").read_text()
        if name in REWRITES:
            pattern, repl = REWRITES[name]
            text, n = re.subn(pattern, repl, text)
            if n != 1:
                raise SystemExit(f"{src / name}.yaml: expected one line matching {pattern!r}, "
                                 f"found {n}")
        (dest / f"{name}.yaml").write_text(text)


def save_observer(directory: Path, classes: list[str]) -> str:
    """A seeded, randomly initialised small_cnn (width 4) as a jobs/train.py checkpoint."""
    import torch

    try:
        from shardforge.models.archs import build_model
    except ImportError:    # before the package restructuring
        from shardforge.train.models import build_model
    try:
        from shardforge.models.checkpoint import STATE_FORMAT, save_state
    except ImportError:
        from shardforge.train.checkpoint import STATE_FORMAT, save_state

    torch.manual_seed(0)
    model = build_model("small_cnn", len(classes), width=4).eval()
    return save_state(str(directory / "checkpoint_epoch0001"), {
        "format": STATE_FORMAT, "epochs_done": 1, "model": model.state_dict(),
        "model_spec": {"arch": "small_cnn", "num_classes": len(classes), "blurpool": False,
                       "width": 4}, "classes": list(classes)})


def show(name: str, home: str) -> dict:
    return json.loads(run_cli(["catalog", "show", name, "--home", home, "--json"], home,
                              sys.stderr))


def output_digests(home: str, cards=CARDS, cards_src: Path | None = None,
                   log=sys.stderr) -> dict:
    """Build ``cards`` (``demo`` first) into the fresh catalog home ``home``; the result."""
    start = time.monotonic()
    home_path = Path(home).resolve()
    if home_path.exists() and any(home_path.iterdir()):
        raise SystemExit(f"{home_path}: not empty; give a fresh catalog home")
    home_path.mkdir(parents=True, exist_ok=True)
    home = str(home_path)
    cards = ["demo", *[c for c in cards if c != "demo"]]
    cards_src = cards_src or default_cards_dir()
    outs: dict[str, str] = {}        # absolute output directory -> card
    fixtures: dict[str, str] = {}
    classes: list[str] = []
    tmp = tempfile.mkdtemp(prefix="shardforge-golden-cards-")
    try:
        cards_dir = Path(tmp) / "cards"
        write_cards(cards_src, cards_dir, cards)
        for name in cards:
            if name in REWRITES and not fixtures:
                state = save_observer(home_path / FIXTURE, classes)
                fixtures["observer_state_sha256"] = sha256_file(Path(state))
            t0 = time.monotonic()
            run_cli(["build", name, "--cards", str(cards_dir), "--home", home], home, log)
            build = show(name, home)
            if build["name"] != name:
                raise RuntimeError(f"catalog show {name} gave {build['name']}")
            if name == "demo":
                classes = list(build["classes"])
            out = Path(build["out"])
            if not out.is_dir() or home_path not in out.parents:
                raise RuntimeError(f"{name}: output {out} is not a directory under {home}")
            outs[str(out)] = name
            print(f"{name}: built into {out.relative_to(home_path)} "
                  f"({time.monotonic() - t0:.0f} s)", file=log, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # longest first: no output directory is a prefix of another, but be safe
    outs = dict(sorted(outs.items(), key=lambda kv: -len(kv[0])))
    return {
        "cards": {name: digest_tree(Path(out), home, outs) for out, name in
                  sorted(outs.items(), key=lambda kv: kv[1])},
        "output_dirs": {name: Path(out).relative_to(home_path).as_posix()
                        for out, name in sorted(outs.items(), key=lambda kv: kv[1])},
        "versions": versions(),
        "canonical_json": {"removed_keys": VOLATILE_KEYS,
                           "rewritten": "strings naming HOME/datasets/NAME/KEY/... -> "
                                        "<OUT:NAME>/..., other strings under HOME -> "
                                        f"{HOME_TOKEN}/..."},
        "fixtures": fixtures,
        "seconds": round(time.monotonic() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("home", help="a fresh catalog home (created; must be empty)")
    p.add_argument("out_json", help="where to write the digests")
    p.add_argument("--cards-src", type=Path,
                   help="cards directory to copy from (default: datasets/ of the checkout "
                        "whose shardforge package is imported)")
    p.add_argument("--only", nargs="+", choices=CARDS, help="build only these (demo always)")
    args = p.parse_args(argv)
    result = output_digests(args.home, tuple(args.only or CARDS), args.cards_src)
    with open(args.out_json, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{args.out_json}: {sum(len(v) for v in result['cards'].values())} files of "
          f"{len(result['cards'])} cards in {result['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
