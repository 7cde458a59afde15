"""Issue 13, item 10: the CUDA private key never leaves the driver and is found nowhere.

Tasks receive the key's HMAC midstates (shardforge.variants.cuda.key), not the key; the
outputs stay byte-identical to the key-holding transform's. Two sweeps, after a successful
and after a failed build in a private Ray (its own temp dir), grep the key's bytes, hex and
base64 through the outputs, the catalog home (catalog.db + WAL), the Ray session directory
(logs, session files, spilled objects) and the captured driver output: found nowhere.
Controls show the sweep does find a planted key (in a file, and in a Ray worker's log).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import io
import os
import secrets
import shutil
import stat
import sys
import tempfile
import time

import numpy as np
import pytest
import ray

from shardforge.build.transform import Decoded
from shardforge.variants.cuda import transform as cuda
from shardforge.variants.cuda.key import KeyedHmac
from shardforge.variants.cuda.spec import make_variant, secrets_of
from shardforge.variants.cuda.transform import CudaTransform

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

KEY = "sweep-" + secrets.token_urlsafe(24)      # fresh per run: a hit cannot be stale
PLANTED = "planted-" + secrets.token_urlsafe(24)


def _needles(key: str) -> dict[str, bytes]:
    raw = key.encode()
    b64 = [base64.b64encode(b"\0" * i + raw)[4 * i // 3 + (1 if i else 0):] for i in range(3)]
    return {"raw": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode(),
            "utf16": key.encode("utf-16-le"),
            **{f"b64@{i}": b.rstrip(b"=")[:-2] for i, b in enumerate(b64)},
            "b64url": base64.urlsafe_b64encode(raw).rstrip(b"=")[:-2]}


def _sweep(roots: list[str], texts: dict[str, str], key: str) -> list[str]:
    """Every (file or text, form) in which ``key`` appears. Regular files only (sockets
    and FIFOs of the Ray session are skipped)."""
    needles = _needles(key)
    hits = []
    for name, text in texts.items():
        hits += [f"{name}: {form}" for form, n in needles.items() if n in text.encode()]
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                path = os.path.join(dirpath, f)
                try:
                    if not stat.S_ISREG(os.lstat(path).st_mode):
                        continue
                    with open(path, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                hits += [f"{path}: {form}" for form, n in needles.items() if n in data]
    return hits


def test_needles_cover_every_base64_alignment():
    for prefix in (b"", b"a", b"ab", b"abc"):
        blob = base64.b64encode(prefix + KEY.encode() + b"tail")
        assert any(n in blob for f, n in _needles(KEY).items() if f.startswith("b64@"))


def test_key_is_not_in_what_tasks_receive_and_outputs_are_unchanged():
    """The pickled transform factory (what every task spec carries) holds neither the key
    nor an encoding of it; the transform it makes gives the same pixels and poison
    decisions as one holding the key (the pre-existing code path)."""
    variant = make_variant({"p": 0.5}, secrets_of(KEY))
    blob = ray.cloudpickle.dumps(variant)
    assert not [f for f, n in _needles(KEY).items() if n in blob]
    assert KEY not in repr(variant) and KEY not in repr(variant.make_transform())
    leaky = ray.cloudpickle.dumps(CudaTransform(KEY))          # control: the sweep can fail
    assert _needles(KEY)["raw"] in leaky

    rng = np.random.default_rng(0)
    samples = [Decoded(f"n{i:05d}_{i * 7}", i % 5,
                       rng.integers(0, 256, (24 + i % 3 * 40, 32, 3), dtype=np.uint8), {})
               for i in range(40)]
    shipped = variant.make_transform()(samples, "train")
    direct = CudaTransform(KEY, p=0.5)(samples, "train")
    assert [s.meta["poisoned"] for s in shipped] == [s.meta["poisoned"] for s in direct]
    assert 5 < sum(s.meta["poisoned"] for s in shipped) < 35
    for a, b in zip(shipped, direct, strict=True):
        assert a.pixels.tobytes() == b.pixels.tobytes()
    kh = KeyedHmac.from_key(KEY)
    for label in range(5):
        for k, pb in ((3, 0.3), (9, 0.06)):
            assert cuda.class_filter(kh, label, k, pb).tobytes() == \
                cuda.class_filter(KEY, label, k, pb).tobytes()


# -- sweeps after real builds -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Failing:
    """A transform factory that builds the real transform, then fails the shard (the
    failed build of the second sweep)."""

    inner: object

    def __call__(self):
        self.inner()
        raise RuntimeError("injected failure: this shard's transform cannot be built")


@pytest.fixture(scope="module")
def sweep_env(demo_dataset):
    """A private Ray with its own temp dir (short path: socket names are limited), a
    catalog home, a key file outside every swept place; torn down after the module."""
    if ray.is_initialized():
        pytest.skip("a Ray runtime is already up in this process; the sweep needs its own")
    base = tempfile.mkdtemp(prefix="sfsw")
    ray_tmp, home, keys = (os.path.join(base, d) for d in ("ray", "home", "keys"))
    os.makedirs(keys)
    key_file = os.path.join(keys, "key")
    with open(key_file, "w") as f:
        f.write(KEY + "\n")
    os.chmod(key_file, 0o600)
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=True, _temp_dir=ray_tmp)
    try:
        yield {"base": base, "ray": ray_tmp, "home": home, "key_file": key_file,
               "parent": demo_dataset}
    finally:
        ray.shutdown()
        shutil.rmtree(base, ignore_errors=True)


def _job():
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "pipelines", "unlearnable.py")
    spec = importlib.util.spec_from_file_location("unlearnable_job_sweep", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flush_ray_logs() -> None:
    time.sleep(1.5)     # log monitor / worker log files flush on a short timer


def test_sweep_after_a_successful_build(sweep_env):
    out = os.path.join(sweep_env["base"], "out-ok")
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        rc = _job().main(["--source", sweep_env["parent"], "--name", "demo-cuda-sweep",
                          "--key-file", sweep_env["key_file"], "--p", "0.5",
                          "--home", sweep_env["home"], "--out", out])
    assert rc == 0, captured.getvalue()[-2000:]
    assert os.path.exists(os.path.join(out, "summary.json"))
    assert os.path.exists(os.path.join(sweep_env["home"], "catalog.db"))
    _flush_ray_logs()
    roots = [out, sweep_env["home"], sweep_env["ray"]]
    assert _sweep(roots, {"driver output": captured.getvalue()}, KEY) == []


def test_sweep_after_a_failed_build(sweep_env):
    from shardforge.catalog.variant import run_variant

    out = os.path.join(sweep_env["base"], "out-fail")
    variant = make_variant({"p": 0.5}, secrets_of(KEY))
    failing = dataclasses.replace(variant, make_transform=_Failing(variant.make_transform))
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), \
            pytest.raises(Exception) as err:
        run_variant(sweep_env["parent"], failing, "demo-cuda-fail", out,
                    catalog_home=sweep_env["home"], secrets={"private_key": KEY},
                    log=captured)
    text = captured.getvalue() + "\n" + "".join(
        __import__("traceback").format_exception(err.value))
    assert "injected failure" in text
    assert not os.path.exists(os.path.join(out, "summary.json"))
    _flush_ray_logs()
    roots = [out, sweep_env["home"], sweep_env["ray"]]
    assert _sweep(roots, {"driver output + traceback": text}, KEY) == []


def test_control_the_sweep_finds_a_planted_key(sweep_env):
    """The same sweep finds a key a worker printed (Ray session logs) or a file holds."""

    @ray.remote(num_cpus=1)
    def leak(value: str) -> None:
        print("leaking", value.encode().hex(), flush=True)

    ray.get(leak.remote(PLANTED))
    planted_dir = os.path.join(sweep_env["base"], "planted")
    os.makedirs(planted_dir)
    with open(os.path.join(planted_dir, "f.json"), "wb") as f:
        f.write(b'{"x": "' + base64.b64encode(b"pre" + PLANTED.encode()) + b'"}')
    deadline = time.monotonic() + 30
    while True:
        hits = _sweep([sweep_env["ray"]], {}, PLANTED)
        if hits or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert any(h.endswith(": hex") for h in hits), hits
    assert any("b64@" in h for h in _sweep([planted_dir], {}, PLANTED))
