"""Pinned downloads of the default inputs: checksum, atomic writes, retries, the rule, and the default DAG.

Offline: files are served over HTTP from a temporary folder on 127.0.0.1 (stdlib http.server in a thread).
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from garimpo.errors import ChecksumError, DownloadError
from garimpo.imagery.download import RetryPolicy, download, sha256_file

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = b'{"type": "FeatureCollection", "features": []}\n' * 200
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
WRONG_SHA = "0" * 64


class FileServer:
    """Serves the files of ``root`` on 127.0.0.1; ``script`` says what to do with the first requests.

    Script entries, one per request in order (then files are served normally): an HTTP status (int) to answer
    with, ``(status, {header: value})``, ``"truncate"`` (announce the full length, send half, close) or
    ``("sleep", seconds)`` (wait, then serve). Every requested path is recorded in ``requests``.
    """

    def __init__(self, root, script=()):
        self.root = Path(root)
        self.script = list(script)
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _status(self, code, headers=None):
                body = f"status {code} from the test server".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                with server._lock:
                    server.requests.append(self.path)
                    action = server.script.pop(0) if server.script else None
                if isinstance(action, int):
                    return self._status(action)
                if isinstance(action, tuple) and isinstance(action[0], int):
                    return self._status(*action)
                if isinstance(action, tuple) and action[0] == "sleep":
                    time.sleep(action[1])
                path = (server.root / self.path.lstrip("/")).resolve()
                if not path.is_relative_to(server.root.resolve()) or not path.is_file():
                    return self._status(404)
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if action == "truncate" else data)

        return Handler


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "points.geojson").write_bytes(PAYLOAD)
    return root


class Sleeps(list):
    """Records the waits asked for instead of waiting."""

    def __call__(self, seconds):
        self.append(seconds)


POLICY = RetryPolicy(attempts=3, base_delay=0.5, max_delay=4.0, timeout=5.0)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_with_the_right_checksum_lands_at_the_target(served, tmp_path):
    dest = tmp_path / "resources" / "downloads" / "points.geojson"
    with FileServer(served) as srv:
        out = download(f"{srv.url}/points.geojson", dest, PAYLOAD_SHA.upper(), retry=POLICY, sleep=Sleeps())
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert sha256_file(dest) == PAYLOAD_SHA
    assert leftovers(dest.parent) == ["points.geojson"]  # no temporary file left beside it
    assert srv.requests == ["/points.geojson"]


def test_an_existing_pinned_file_is_not_downloaded_again(served, tmp_path):
    dest = tmp_path / "points.geojson"
    dest.write_bytes(PAYLOAD)
    with FileServer(served) as srv:
        download(f"{srv.url}/points.geojson", dest, PAYLOAD_SHA, retry=POLICY, sleep=Sleeps())
    assert srv.requests == []


def test_a_wrong_checksum_is_a_clear_error_and_leaves_nothing(served, tmp_path):
    dest = tmp_path / "dl" / "points.geojson"
    sleeps = Sleeps()
    with FileServer(served) as srv:
        url = f"{srv.url}/points.geojson"
        with pytest.raises(ChecksumError) as info:
            download(url, dest, WRONG_SHA, retry=POLICY, sleep=sleeps)
    msg = str(info.value)
    assert url in msg and f"expected sha256 {WRONG_SHA}" in msg and f"got {PAYLOAD_SHA}" in msg
    assert "Nothing was written" in msg and "downloads.files" in msg
    assert not dest.exists() and leftovers(dest.parent) == []
    assert len(srv.requests) == 1 and sleeps == []  # a different file is not retried


def test_a_stale_file_with_the_wrong_checksum_is_replaced(served, tmp_path):
    dest = tmp_path / "points.geojson"
    dest.write_bytes(b"an older version")
    with FileServer(served) as srv:
        download(f"{srv.url}/points.geojson", dest, PAYLOAD_SHA, retry=POLICY, sleep=Sleeps())
    assert dest.read_bytes() == PAYLOAD and len(srv.requests) == 1


def test_a_flaky_server_is_retried_with_exponential_backoff(served, tmp_path):
    dest = tmp_path / "points.geojson"
    sleeps = Sleeps()
    with FileServer(served, script=[503, 502]) as srv:
        download(f"{srv.url}/points.geojson", dest, PAYLOAD_SHA, retry=POLICY, sleep=sleeps)
    assert dest.read_bytes() == PAYLOAD
    assert len(srv.requests) == 3 and sleeps == [0.5, 1.0]
    assert leftovers(tmp_path) == ["points.geojson", "served"]


def test_a_body_cut_short_is_retried(served, tmp_path):
    dest = tmp_path / "points.geojson"
    with FileServer(served, script=["truncate"]) as srv:
        download(f"{srv.url}/points.geojson", dest, PAYLOAD_SHA, retry=POLICY, sleep=Sleeps())
    assert dest.read_bytes() == PAYLOAD and len(srv.requests) == 2


def test_a_timeout_is_retried(served, tmp_path):
    dest = tmp_path / "points.geojson"
    policy = RetryPolicy(attempts=2, base_delay=0.1, max_delay=1.0, timeout=0.3)
    with FileServer(served, script=[("sleep", 1.5)]) as srv:
        download(f"{srv.url}/points.geojson", dest, PAYLOAD_SHA, retry=policy, sleep=Sleeps())
    assert dest.read_bytes() == PAYLOAD and len(srv.requests) == 2


def test_retry_after_is_honoured_up_to_the_longest_wait(served, tmp_path):
    dest = tmp_path / "points.geojson"
    sleeps = Sleeps()
    with FileServer(served, script=[(429, {"Retry-After": "3"}), (503, {"Retry-After": "120"})]) as srv:
        download(f"{srv.url}/points.geojson", dest, PAYLOAD_SHA, retry=POLICY, sleep=sleeps)
    assert sleeps == [3.0, 4.0]


def test_only_errors_give_a_clear_final_error(served, tmp_path):
    dest = tmp_path / "dl" / "points.geojson"
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=5, base_delay=1.0, max_delay=5.0, timeout=5.0)
    with FileServer(served, script=[503] * 10) as srv:
        url = f"{srv.url}/points.geojson"
        with pytest.raises(DownloadError) as info:
            download(url, dest, PAYLOAD_SHA, retry=policy, sleep=sleeps)
    msg = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    assert url in msg and "after 5 attempts" in msg and "HTTP 503" in msg
    assert PAYLOAD_SHA in msg and str(dest) in msg and "internet" in msg
    assert len(srv.requests) == 5 and sleeps == [1.0, 2.0, 4.0, 5.0]  # doubling, capped at max_delay_s
    assert not dest.exists() and leftovers(dest.parent) == []


def test_not_found_is_not_retried(served, tmp_path):
    dest = tmp_path / "missing.geojson"
    sleeps = Sleeps()
    with FileServer(served) as srv:
        with pytest.raises(DownloadError, match=r"HTTP 404 .*not retried") as info:
            download(f"{srv.url}/missing.geojson", dest, PAYLOAD_SHA, retry=POLICY, sleep=sleeps)
    assert f"{srv.url}/missing.geojson" in str(info.value)
    assert len(srv.requests) == 1 and sleeps == [] and not dest.exists()


def test_an_unreachable_host_is_retried_then_reported(tmp_path):
    with FileServer(tmp_path) as srv:  # take a free port, then close it: nothing listens there any more
        url = f"{srv.url}/points.geojson"
    sleeps = Sleeps()
    with pytest.raises(DownloadError, match="after 3 attempts") as info:
        download(url, tmp_path / "points.geojson", PAYLOAD_SHA, retry=POLICY, sleep=sleeps)
    assert "URLError" in str(info.value) and sleeps == [0.5, 1.0]
    assert not (tmp_path / "points.geojson").exists()


@pytest.mark.parametrize(
    "sha, url, match",
    [
        ("abc", "https://example.org/x.geojson", "64 hexadecimal"),
        (PAYLOAD_SHA, "ftp://example.org/x.geojson", "scheme"),
    ],
)
def test_bad_pins_are_refused_before_any_request(tmp_path, sha, url, match):
    with pytest.raises(DownloadError, match=match):
        download(url, tmp_path / "x.geojson", sha, sleep=Sleeps())


def test_a_file_url_works_for_a_local_mirror(served, tmp_path):
    dest = tmp_path / "points.geojson"
    download((served / "points.geojson").as_uri(), dest, PAYLOAD_SHA, sleep=Sleeps())
    assert dest.read_bytes() == PAYLOAD


# ---- the workflow -------------------------------------------------------------------------------------------


def snakemake(workdir, *args, timeout=300):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def workflow_copy(dest: Path) -> Path:
    """The workflow alone (Snakefile, rules, scripts, config, envs) in an empty folder: no resources/."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "rules", "scripts", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    assert not (dest / "resources").exists()
    return dest


def planned_downloads(text: str) -> list[str]:
    """Outputs of the download_input jobs in a dry run's listing."""
    return sorted(re.findall(r"rule download_input:\n(?:    .*\n)*?    output: (\S+)", text))


def pinned(name: str) -> str:
    return f"resources/downloads/{name}"


DEFAULT_TRAINING_INPUTS = [
    pinned("amazon_all_48px_v3.1_2023_positives_0.999_cleaned.geojson"),
    pinned("aquaculture-faziendas-negatives2025-08.geojson"),
    pinned("indigenous_territories_impacts.geojson"),
    pinned("riverbank_negatives_v2025-08.geojson"),
]


def test_default_config_pins_every_input_it_uses():
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    files = cfg["downloads"]["files"]
    used = [p["path"] for p in cfg["positives"]["points"] + cfg["negatives"]["hard_negative_points"]]
    used += [cfg["negatives"]["protected_areas"]] + [r["path"] for r in cfg["regions"].values()]
    for path in used:
        assert path.startswith("resources/downloads/") and Path(path).name in files, path
    for name, spec in files.items():
        assert re.fullmatch(
            r"https://raw\.githubusercontent\.com/earthrise-media/mining-detector/[0-9a-f]{40}/\S+", spec["url"]
        ), name
        assert spec["url"].endswith("/" + name) and re.fullmatch(r"[0-9a-f]{64}", spec["sha256"]), name
        assert spec["licence"] == "CC-BY-4.0" and "Earth Genome, Amazon Mining Watch" in spec["attribution"]
    assert set(cfg["regions"]) >= {"amazon", "tapajos", "yanomami", "munduruku"}
    assert cfg["run_regions"] == ["amazon"]


@pytest.mark.shared
def test_pins_match_the_shared_copies(shared_dir):
    """Where the project's byte copy of a pinned file is at hand, its sha256 is the pinned one."""
    files = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["downloads"]["files"]
    copies = {p.name: p for p in (shared_dir / "data" / "amw").rglob("*.geojson")}
    checked = 0
    for name, spec in files.items():
        if name in copies:
            assert sha256_file(copies[name]) == spec["sha256"], name
            checked += 1
    assert checked == len(files)


def test_smaller_regions_plan_from_an_empty_folder(tmp_path):
    """tapajos, yanomami and munduruku plan too; the two territories share one downloaded file."""
    work = workflow_copy(tmp_path / "wf")
    targets = [f"results/detections/{r}.geojson" for r in ("tapajos", "yanomami", "munduruku")]
    proc = snakemake(work, "-n", "--cores", "2", *targets)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Missing input files" not in out, out[-6000:]
    assert planned_downloads(out) == sorted(
        DEFAULT_TRAINING_INPUTS + [pinned("tapajos_basin.geojson"), pinned("yanomami_and_munduruku.geojson")]
    )
    assert re.search(r"^region_cells\s+3\s*$", out, re.M), out[-3000:]  # one cell list per region


def test_the_download_rule_fetches_checks_and_refuses(served, tmp_path):
    """The rule itself, on the local server: a good pin lands, a bad one fails with its message in the log."""
    work = workflow_copy(tmp_path / "wf")
    with FileServer(served) as srv:
        extra = {
            "downloads": {
                "files": {
                    "good.geojson": {"url": f"{srv.url}/points.geojson", "sha256": PAYLOAD_SHA},
                    "bad.geojson": {"url": f"{srv.url}/points.geojson", "sha256": WRONG_SHA},
                }
            }
        }
        (work / "extra.yaml").write_text(yaml.safe_dump(extra))
        good = snakemake(work, pinned("good.geojson"), "--cores", "1", "--configfile", "extra.yaml")
        bad = snakemake(work, pinned("bad.geojson"), "--cores", "1", "--configfile", "extra.yaml")
    assert good.returncode == 0, good.stderr[-4000:]
    assert (work / pinned("good.geojson")).read_bytes() == PAYLOAD
    assert (work / "benchmarks" / "download_input_good.geojson.tsv").exists()
    assert bad.returncode != 0
    assert not (work / pinned("bad.geojson")).exists()
    assert leftovers(work / "resources" / "downloads") == ["good.geojson"]
    log = (work / "logs" / "download_input_bad.geojson.log").read_text()
    assert "checksum mismatch" in log and WRONG_SHA in log and PAYLOAD_SHA in log
    # Names not under downloads.files are not the rule's business: no rule makes them.
    other = snakemake(work, "-n", "--cores", "1", pinned("unknown.geojson"))
    assert other.returncode != 0 and "MissingRuleException" in other.stdout + other.stderr
