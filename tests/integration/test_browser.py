"""The notebooks as a researcher meets them: JupyterLab in a real (headless) Chromium.

Starts JupyterLab on loopback from the kit's environment, opens ``01_data_prep`` and ``08_chat`` in
Debian's ``chromium`` driven by Selenium through Debian's ``chromium-driver`` (no browser download),
runs all cells from JupyterLab's own "Run All Cells" command, and asserts what a person would see:
no error output, a rendered figure in 01, the chat transcript in 08. Screenshots are saved under
the test's temp dir (the path is printed). The notebooks run on copies in a temp dir, with
``RSO_ROOT`` a temp output root, so the working tree is never written.

``make test`` installs ``chromium`` and ``chromium-driver`` with apt where it runs as root
(``make browser-deps``); elsewhere the test skips and says what is missing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from repo_paths import REPO_ROOT

ROOT = REPO_ROOT
pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# a notebook is given this long to run all its cells (08 builds the retriever index on a cold
# output root: minutes on a loaded 2-core machine); progress is polled, errors end the wait early
RUN_TIMEOUT_S = 1200


def _missing() -> str | None:
    if not CHROMIUM or not CHROMEDRIVER:
        return "Debian's chromium and chromium-driver are not installed (make browser-deps, as root)"
    try:
        import jupyterlab  # noqa: F401
        import selenium  # noqa: F401
    except ImportError as e:
        return f"{e.name} is not installed in this environment (pip install -r requirements.txt)"
    return None


if _missing():
    pytest.skip(_missing(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_parameters(nb_path: Path, **values) -> None:
    """Rewrite assignments in the copy's ``parameters`` cell (what papermill would inject)."""
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = "".join(cell["source"]).split("\n")
    for name, value in values.items():
        idx = [i for i, ln in enumerate(lines) if ln.startswith(f"{name} = ")]
        assert idx, f"{nb_path.name}: no parameter {name} in its parameters cell"
        lines[idx[0]] = f"{name} = {value!r}"
    cell["source"] = "\n".join(lines)
    nb_path.write_text(json.dumps(nb, indent=1))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on loopback over a temp copy of the notebooks: yields (base url, token, dir)."""
    work = tmp_path_factory.mktemp("lab")
    nbdir, out_root = work / "notebooks", work / "out"
    nbdir.mkdir()
    out_root.mkdir()
    for name in ("01_data_prep.ipynb", "08_chat.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, nbdir / name)
    # the temp output root has no trained Planner: the chat uses the untrained head, as a user would
    # who opens 08 before running 02/03
    _set_parameters(nbdir / "08_chat.ipynb", PLANNER="untrained")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, RSO_ROOT=str(out_root), HF_HUB_OFFLINE="1", JUPYTER_CONFIG_DIR=str(work / "jupyter"))
    env.setdefault("RSO_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    log = open(work / "jupyterlab.log", "w")  # noqa: SIM115 -- the server writes to it until the finally below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={nbdir}",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands as the menus do
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",  # CI runs as root; the server listens on loopback only
            # a kernel can take minutes to come up on a loaded 2-core machine (default: 60 s, then
            # the page's kernel connection is refused and nothing runs)
            "--MappingKernelManager.kernel_info_timeout=600",
        ],
        cwd=nbdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: see {work / 'jupyterlab.log'}")
                time.sleep(0.5)
        yield base, token, work
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


# JavaScript run in the page: the state of every code cell of the open notebook
CELL_STATE_JS = """
const cells = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')];
return cells.map(c => ({
  prompt: (c.querySelector('.jp-InputPrompt') || {}).textContent || '',
  errors: [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent)
           .filter(t => /Traceback \\(most recent call last\\)|^\\w*Error: /m.test(t)).length,
}));
"""


def _run_all(drv, lab, name: str) -> dict:
    """Open a notebook, run all cells through JupyterLab's command, wait, save; returns its state."""
    base, token, work = lab
    drv.get(f"{base}/lab/tree/{name}?token={token}")
    deadline = time.monotonic() + 180
    while not drv.execute_script(
        "return !!(window.jupyterapp && document.querySelector('.jp-NotebookPanel .jp-CodeCell'))"
        " && document.querySelector('.jp-Notebook-ExecutionIndicator') !== null"
    ):
        assert time.monotonic() < deadline, f"{name}: JupyterLab did not open the notebook"
        time.sleep(1)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    _wait_kernel_idle(lab, name, deadline)
    # not awaited: WebDriver would wait for the returned promise, i.e. for the whole run
    run_all = "window.jupyterapp.commands.execute('notebook:run-all-cells'); return null;"
    drv.execute_script(run_all)
    started = time.monotonic()
    while True:
        cells = drv.execute_script(CELL_STATE_JS)
        done = cells and all(c["prompt"].strip() not in ("[ ]:", "[*]:", "") for c in cells)
        errors = sum(c["errors"] for c in cells)
        if done or errors:
            break
        assert time.monotonic() < deadline, f"{name}: cells still running after {RUN_TIMEOUT_S} s: {cells}"
        if time.monotonic() - started > 60 and all(c["prompt"].strip() in ("[ ]:", "") for c in cells):
            # nothing started: the command reached a kernel connection that was not ready yet
            _wait_kernel_idle(lab, name, deadline)
            drv.execute_script(run_all)
            started = time.monotonic()
        time.sleep(2)
    drv.execute_script("return window.jupyterapp.commands.execute('docmanager:save')")
    time.sleep(2)
    drv.execute_script(  # the screenshot shows the last output, where the notebook ends
        "const o = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output');"
        "if (o.length) o[o.length - 1].scrollIntoView({block: 'end'});"
    )
    shot = work / f"{Path(name).stem}.png"
    drv.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    saved = json.loads((work / "notebooks" / name).read_text())
    return {"cells": cells, "errors": errors, "nb": saved, "screenshot": shot}


def _wait_kernel_idle(lab, name: str, deadline: float) -> None:
    """Until the notebook's kernel reports ``idle`` (the server's sessions API): a kernel starting
    on a loaded machine would otherwise swallow the run command."""
    base, token, _ = lab
    state = None
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=10) as r:
            sessions = json.load(r)
        state = next((s["kernel"]["execution_state"] for s in sessions if s.get("path", "").endswith(name)), None)
        if state == "idle":
            return
        time.sleep(2)
    pytest.fail(f"{name}: its kernel never became idle (last state: {state})")


def _saved_errors(nb: dict) -> list[str]:
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in nb["cells"]
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def test_01_data_prep_runs_in_the_browser_and_shows_its_figure(lab, browser):
    state = _run_all(browser, lab, "01_data_prep.ipynb")
    assert state["errors"] == 0 and not _saved_errors(state["nb"]), _saved_errors(state["nb"]) or state["cells"]
    imgs = browser.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedImage img")
    assert imgs, "01_data_prep: no figure rendered inline"
    # a figure that rendered has a size (an image that failed to decode is 0 x 0)
    assert any(i.get_property("naturalWidth") > 100 for i in imgs)
    tables = browser.find_elements(
        By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedHTMLCommon table"
    )
    assert tables, "01_data_prep: Table II is not shown as a table"


def test_08_chat_shows_the_transcript_in_the_browser(lab, browser):
    state = _run_all(browser, lab, "08_chat.ipynb")
    assert state["errors"] == 0 and not _saved_errors(state["nb"]), _saved_errors(state["nb"]) or state["cells"]
    text = browser.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden)").text
    # the scripted user's first line and the system's turns, as rendered in the page
    assert "Hi! I'd like a funny movie for tonight." in text
    assert text.count("system> ") >= 2, "08_chat: the system's replies are not shown"
    assert "accepted:" in text and "turns:" in text
