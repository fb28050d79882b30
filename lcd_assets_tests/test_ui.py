"""A scientist sees the platform's results in the Dagster UI: a real webserver, a real browser.

One measurement (plate R01-L01 × timepoint 04h of the small screen) goes through the ``setup`` and
``acquisition`` jobs on a persistent instance; then ``dagster-webserver`` serves the code location
``lcd`` (``lcd_assets.definitions``, the workspace ``lcd ui`` writes) over that instance, as ``lcd ui``
would. The UI's data is checked over its
GraphQL API, and the pages themselves are rendered by headless Chromium (skipped where no Chromium
is installed, except in CI, where its absence fails the test).
"""

from __future__ import annotations

import base64
import contextlib
import html
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from lcd_assets.demo import LOCATION_NAME
from lcd_assets.definitions import build_definitions
from lcd_assets.demo import prepare_instance
from lcd_assets.partitions import measurement_key, plate_partitions, timepoint_partitions
from lcd_assets_tests.conftest import local_resources, new_home

REPO = Path(__file__).resolve().parents[1]
PLATE, TIMEPOINT = "R01-L01", "04h"
PARTITION = str(measurement_key(PLATE, TIMEPOINT))  # "R01-L01|04h" (dimensions in name order)
SHOWN_ASSETS = {
    "image_index": "acquisition",
    "tiles": "acquisition",
    "tile_embeddings": "acquisition",
    "well_embeddings": "acquisition",
    "condition_profiles": "analysis",
}
TILE_EMBEDDING_CHECKS = {"embeddings_finite_and_shaped", "one_embedding_per_kept_tile"}
STARTUP_TIMEOUT_S = 60
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # without these Chromium's own background connections are refused on a closed network
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


@dataclass
class UiServer:
    url: str
    home: Path
    acquisition_run_id: str
    shots: Path  # screenshots of the rendered pages

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            out = json.load(resp)
        assert not out.get("errors"), out["errors"]
        return out["data"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """End the webserver and its code server (own process group)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_until_loaded(server: UiServer, proc: subprocess.Popen, log: Path) -> None:
    """Bounded wait: the HTTP server answers, then the code location has loaded."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/server_info", timeout=5):
                pass
            data = server.graphql(
                "{ locationStatusesOrError { ... on WorkspaceLocationStatusEntries"
                " { entries { name loadStatus } } } }"
            )
            entries = data["locationStatusesOrError"]["entries"]
            status = {e["name"]: e["loadStatus"] for e in entries}
            if status.get(LOCATION_NAME) == "LOADED":  # the name workspace.yaml gives it, as `lcd ui` serves it
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(
        f"dagster-webserver not ready after {STARTUP_TIMEOUT_S} s (locations: {status}):\n"
        f"{log.read_text()[-4000:]}"
    )


@pytest.fixture(scope="module")
def ui(small_screen, tmp_path_factory):
    """One measurement materialized on a persistent instance, served by dagster-webserver."""
    root = tmp_path_factory.mktemp("ui")
    home = new_home(root / "lcd_home", small_screen)

    with pytest.MonkeyPatch.context() as mp:
        # prepare_instance sets both variables in os.environ; registering them first means they
        # are restored (or removed) when the module is done, so other tests see no change.
        mp.setenv("DAGSTER_HOME", str(home / "dagster"))
        mp.setenv("LCD_HOME", str(home))
        dagster_home = prepare_instance(home)
        assert (dagster_home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()

        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            instance.add_dynamic_partitions(plate_partitions.name, [PLATE])
            instance.add_dynamic_partitions(timepoint_partitions.name, [TIMEPOINT])
            defs = build_definitions(local_resources(home))
            setup = defs.resolve_job_def("setup").execute_in_process(instance=instance)
            assert setup.success
            acquisition = defs.resolve_job_def("acquisition").execute_in_process(
                instance=instance, partition_key=measurement_key(PLATE, TIMEPOINT)
            )
            assert acquisition.success

        port = _free_port()
        log = root / "webserver.log"
        env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "LCD_HOME": str(home)}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "dagster_webserver", "-w", str(dagster_home / "workspace.yaml"),
                 "-h", "127.0.0.1", "-p", str(port)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            server = UiServer(f"http://127.0.0.1:{port}", home, acquisition.run_id, root / "screenshots")
            server.shots.mkdir()
            _wait_until_loaded(server, proc, log)
            # what "Skip" on the first-visit "Join the Dagster community" dialog does: without it
            # the dialog covers the page in every fresh browser profile
            assert server.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
            yield server
        finally:
            _stop(proc)


# --------------------------------------------------------------------------------------------
# the UI's data (GraphQL)

ASSET_NODES = """{
  assetNodes { assetKey { path } description groupName isPartitioned kinds hasAssetChecks }
}"""

LATEST_BY_PARTITION = """query ($asset: [String!]!, $partitions: [String!]) {
  assetNodeOrError(assetKey: {path: $asset}) {
    ... on AssetNode {
      latestMaterializationByPartition(partitions: $partitions) {
        partition
        runId
        metadataEntries {
          label
          __typename
          ... on MarkdownMetadataEntry { mdStr }
          ... on JsonMetadataEntry { jsonString }
          ... on IntMetadataEntry { intValue }
        }
      }
    }
  }
}"""

ASSET_CHECKS = """query ($asset: [String!]!) {
  assetNodeOrError(assetKey: {path: $asset}) {
    ... on AssetNode {
      assetChecksOrError {
        __typename
        ... on AssetChecks {
          checks {
            name
            blocking
            description
            executionForLatestMaterialization {
              runId
              status
              evaluation { success description }
            }
          }
        }
      }
    }
  }
}"""


def _asset_nodes_carry_descriptions_and_groups(ui: UiServer) -> None:
    nodes = {"/".join(n["assetKey"]["path"]): n for n in ui.graphql(ASSET_NODES)["assetNodes"]}
    specs = {s.key.to_user_string(): s for s in build_definitions().resolve_all_asset_specs()}
    for name, group in SHOWN_ASSETS.items():
        assert name in nodes, f"{name} not in the UI's asset nodes: {sorted(nodes)}"
        node = nodes[name]
        assert node["description"] == specs[name].description, name
        assert len(node["description"]) > 40, name
        assert node["groupName"] == group, name
        assert node["isPartitioned"], name
        assert set(node["kinds"]) == set(specs[name].kinds), name
        assert node["hasAssetChecks"], name


def _tiles_partition_shows_preview_and_qc(ui: UiServer) -> None:
    data = ui.graphql(LATEST_BY_PARTITION, {"asset": ["tiles"], "partitions": [PARTITION]})
    (event,) = data["assetNodeOrError"]["latestMaterializationByPartition"]
    assert event is not None, f"no materialization of tiles {PARTITION} in the UI"
    assert event["partition"] == PARTITION
    assert event["runId"] == ui.acquisition_run_id
    entries = {e["label"]: e for e in event["metadataEntries"]}

    preview = entries["preview_fov"]
    assert preview["__typename"] == "MarkdownMetadataEntry"
    match = re.fullmatch(r"!\[([^\]]+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", preview["mdStr"])
    assert match, preview["mdStr"][:200]
    assert "tile grid" in match.group(1)
    assert base64.b64decode(match.group(2)).startswith(b"\x89PNG\r\n\x1a\n")

    rejected = entries["rejected_by_reason"]
    assert rejected["__typename"] == "JsonMetadataEntry"
    reasons = json.loads(rejected["jsonString"])
    assert isinstance(reasons, dict) and all(isinstance(v, int) and v > 0 for v in reasons.values())
    tiles, kept = entries["tiles"]["intValue"], entries["kept"]["intValue"]
    assert 0 < kept <= tiles and sum(reasons.values()) == tiles - kept


def _tile_embeddings_checks_passed(ui: UiServer) -> None:
    data = ui.graphql(ASSET_CHECKS, {"asset": ["tile_embeddings"]})
    result = data["assetNodeOrError"]["assetChecksOrError"]
    assert result["__typename"] == "AssetChecks", result
    checks = {c["name"]: c for c in result["checks"]}
    assert set(checks) == TILE_EMBEDDING_CHECKS
    for name, check in checks.items():
        assert check["blocking"] and check["description"], name
        execution = check["executionForLatestMaterialization"]
        assert execution is not None, f"{name}: no execution for the latest materialization"
        assert execution["status"] == "SUCCEEDED", (name, execution)
        assert execution["evaluation"]["success"] is True, (name, execution)
        assert execution["runId"] == ui.acquisition_run_id, name


# --------------------------------------------------------------------------------------------
# the pages (headless Chromium)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.environ.get("CI"):
        pytest.fail("chromium is not on PATH: CI must install it (.ci/run does, with apt-get)")
    pytest.skip("chromium is not installed (apt-get install chromium): the UI's data passed over "
                "GraphQL, the rendered pages are not checked")


def _page_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom))).strip()


def _render(exe: str, url: str, png: Path, expected: list[str]) -> str:
    """The page's text once it shows everything expected. The single-page app fetches its data
    after the first paint, and a dump can catch it half-drawn: longer virtual-time budgets are
    tried before giving up."""
    text = ""
    for budget_ms in (10_000, 20_000, 30_000):
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            proc = subprocess.run(
                [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                 f"--virtual-time-budget={budget_ms}", f"--screenshot={png}", "--dump-dom", url],
                capture_output=True, text=True, timeout=90,
            )
        text = _page_text(proc.stdout)
        if all(s in text for s in expected):
            return text
    raise AssertionError(
        f"{url} never showed {[s for s in expected if s not in text]}; page text: {text[:2000]!r}"
    )


def _description_lead(asset: str) -> str:
    """The description up to its first markdown code span, whitespace-normalised."""
    spec = next(s for s in build_definitions().resolve_all_asset_specs() if s.key.to_user_string() == asset)
    return re.sub(r"\s+", " ", spec.description.split("`")[0]).strip()


def _browser_shows_tiles_overview(ui: UiServer, exe: str) -> None:
    png = ui.shots / "tiles_overview.png"
    text = _render(exe, f"{ui.url}/assets/tiles", png, [
        _description_lead("tiles"), "Latest materialization", PARTITION, "Latest check results",
        "fovs", "rejected_by_reason", "qc_vs_truth", "preview_fov", "tile_examples", "acquisition",
    ])
    assert "Join the Dagster community" not in text
    assert png.stat().st_size > 20_000  # a rendered page, not a blank one


def _browser_shows_tiles_partition(ui: UiServer, exe: str) -> None:
    png = ui.shots / "tiles_partition.png"
    query = urllib.parse.urlencode({"view": "partitions", "partition": PARTITION})
    _render(exe, f"{ui.url}/assets/tiles?{query}", png, [
        PARTITION, "Materialized", ui.acquisition_run_id[:8], "rejected_by_reason", "preview_fov",
        "tile_examples",
    ])
    assert png.stat().st_size > 20_000


def _browser_shows_passed_checks(ui: UiServer, exe: str) -> None:
    png = ui.shots / "tile_embeddings_checks.png"
    # the list of checks (name, then its status) and the first check's latest execution
    listed = [f"{name} Succeeded" for name in sorted(TILE_EMBEDDING_CHECKS)]
    _render(exe, f"{ui.url}/assets/tile_embeddings?view=checks", png, [
        *listed, "This is a blocking asset check.", "Every embedding is 384-d and finite.",
        "Evaluation result Passed",
    ])
    assert png.stat().st_size > 20_000


class _Browser:
    """Headless Chromium driven over the DevTools protocol, for what needs a click."""

    def __init__(self, exe: str, stack: contextlib.ExitStack):
        from websockets.sync.client import connect  # with dagster-webserver (uvicorn[standard])

        profile = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chromium-")))
        self.proc = subprocess.Popen(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        stack.callback(_stop, self.proc)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port (exit code {self.proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            page = next(t for t in json.load(resp) if t["type"] == "page")
        self.ws = stack.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {expression}")

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))


def _browser_opens_fov_preview(ui: UiServer, exe: str) -> None:
    """The scientist clicks [Show Markdown] on preview_fov and sees the FOV with its tile grid."""
    query = urllib.parse.urlencode({"view": "partitions", "partition": PARTITION})
    with contextlib.ExitStack() as stack:
        browser = _Browser(exe, stack)
        browser.call("Page.navigate", url=f"{ui.url}/assets/tiles?{query}")
        browser.wait_for("document.body !== null && document.body.innerText.includes('preview_fov')")
        browser.js(
            """(() => {
              const row = [...document.querySelectorAll('tr')]
                .find(r => r.querySelector('td')?.innerText.trim() === 'preview_fov');
              row.querySelector('a').click();
              return true;
            })()"""
        )
        image = browser.wait_for(
            """(() => {
              const img = [...document.querySelectorAll('[role=dialog] img, .bp5-dialog img')]
                .find(i => i.src.startsWith('data:image/png') && i.complete && i.naturalWidth > 0);
              return img ? {width: img.naturalWidth, height: img.naturalHeight, alt: img.alt} : null;
            })()"""
        )
        time.sleep(0.3)  # the dialog's opening transition
        browser.screenshot(ui.shots / "tiles_preview_fov.png")
    assert "tile grid" in image["alt"], image
    assert image["width"] >= 64 and image["height"] >= 64, image


# --------------------------------------------------------------------------------------------
# One test, so that pytest-xdist never splits this module across workers (each would build its
# own instance and webserver, ~45 s); the parts above read as its steps.


def test_scientist_sees_results_in_ui(ui):
    _asset_nodes_carry_descriptions_and_groups(ui)
    _tiles_partition_shows_preview_and_qc(ui)
    _tile_embeddings_checks_passed(ui)

    exe = _chromium()  # skips here (the GraphQL part has passed) where no browser is installed
    _browser_shows_tiles_overview(ui, exe)
    _browser_shows_tiles_partition(ui, exe)
    _browser_shows_passed_checks(ui, exe)
    _browser_opens_fov_preview(ui, exe)
