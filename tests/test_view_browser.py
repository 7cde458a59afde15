"""`shardforge view` end to end (slow): the command started as a subprocess on a demo
catalog, every page type opened in a real headless Chromium (selenium + Debian's
chromium-driver): every <img> loaded (naturalWidth > 0), no console error, a screenshot
of each page saved under the test's tmp dir (``SHARDFORGE_VIEW_SHOTS=DIR`` keeps them)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import REPO, free_port, kill_session
from view_catalog import build_view_catalog

from shardforge.layout.dataset import open_dataset

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`shardforge view --home HOME --port P` in its own session; yields (base URL, catalog)."""
    cat = build_view_catalog(str(tmp_path_factory.mktemp("view-e2e")))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(REPO, "src"), os.environ.get("PYTHONPATH", "")]))
    log = open(tmp_path_factory.mktemp("view-log") / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "shardforge.cli", "view", "--home",
                             cat["home"], "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            log.seek(0)
            text = log.read()
            if f"serving {url}" in text:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"shardforge view did not start (exit {proc.poll()}): {text}")
            time.sleep(0.2)
        yield url.rstrip("/"), cat
    finally:
        kill_session(proc)
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup.sh installs "
                    "them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


_IMAGES = """
const imgs = Array.from(document.images);
return imgs.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);
"""


def _open(driver, url: str, shots: str, name: str) -> list:
    """Load ``url``, wait for its images, save a screenshot; return the console log."""
    driver.get_log("browser")                       # drop earlier pages' entries
    driver.get(url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(done for _, done, _ in driver.execute_script(_IMAGES)):
            break
        time.sleep(0.1)
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))
    return driver.get_log("browser")


def test_every_page_type_loads_its_images_without_console_errors(server, browser, tmp_path):
    base, cat = server
    shots = os.environ.get("SHARDFORGE_VIEW_SHOTS") or str(tmp_path / "shots")
    os.makedirs(shots, exist_ok=True)
    index = open_dataset(cat["builds"]["toy"].out).split("train")
    key = str(index.key[0])
    broken_key = str(index.key[np.flatnonzero(index.shard == 0)[0]])   # in the deleted tar
    pages = {
        "catalog": "/", "dataset": "/d/toy", "dataset-val": "/d/toy?split=val",
        "dataset-reinforced": "/d/toy-plus", "grid": "/d/toy/grid",
        "grid-class": "/d/toy/grid?cls=circle&n=2&page=1",
        "sample": f"/d/toy/sample/train/{key}",
        "sample-cuda": f"/d/toy-cuda/sample/train/{key}",
        "sample-reinforced": f"/d/toy-plus/sample/train/{key}",
        "grid-missing-shard": "/d/toy-broken/grid",
        "sample-missing-shard": f"/d/toy-broken/sample/train/{broken_key}",
    }
    problems = []
    for name, path in pages.items():
        console = _open(browser, base + path, shots, name)
        images = browser.execute_script(_IMAGES)
        assert images or name.startswith("dataset") or name == "catalog", name
        problems += [f"{name}: image {src} did not load" for src, done, width in images
                     if not (done and width > 0)]
        problems += [f"{name}: console {e['level']}: {e['message']}" for e in console
                     if e["level"] in ("SEVERE", "ERROR")]
    assert not problems, "\n".join(problems)
    body = browser.find_element("tag name", "body").text
    assert "is missing" in body                           # the placeholder's reason, in text
    assert len(os.listdir(shots)) == len(pages)


def test_404_page_names_close_matches_in_the_browser(server, browser, tmp_path):
    base, _ = server
    console = _open(browser, base + "/d/toyy", str(tmp_path), "not-found")
    body = browser.find_element("tag name", "body").text
    assert "unknown dataset 'toyy'" in body
    links = [a.get_attribute("href") for a in browser.find_elements("css selector",
                                                                    "#suggestions a")]
    assert base + "/d/toy" in links
    # the only console entry is the browser's own note of the 404 status
    assert console and all(re.search(r"404", e["message"]) for e in console), console
