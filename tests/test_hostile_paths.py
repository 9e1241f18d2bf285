"""Issue 17, hostile config and odd files: names that lead out of the project, litter of killed writers,
downloads without bounds. Offline: files are served on 127.0.0.1 (test_inputs' FileServer and a streaming
server below).
"""

import logging
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from test_cli_config import _merged
from test_inputs import (
    PAYLOAD,
    PAYLOAD_SHA,
    FileServer,
    Sleeps,
    leftovers,
    pinned,
    snakemake,
    workflow_copy,
)

from garimpo import atomic
from garimpo.atomic import HOST, atomic_path, scratch_dir, sweep_temps
from garimpo.config import config_error
from garimpo.errors import DownloadError
from garimpo.imagery.download import MIB, RetryPolicy, download, path_under

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "schema.yaml"
POLICY = RetryPolicy(attempts=3, base_delay=0.5, max_delay=4.0, timeout=5.0)
DAY = 24 * 3600


@pytest.fixture
def served(tmp_path):
    """A folder for test_inputs' FileServer holding points.geojson (PAYLOAD)."""
    root = tmp_path / "served"
    root.mkdir()
    (root / "points.geojson").write_bytes(PAYLOAD)
    return root


# ---- kind 1: config names that become paths ---------------------------------------------------------------

ESCAPES = ["../../../escape.bin", "a/b.geojson", "/etc/passwd", "..", ".hidden", "a b.geojson", "x/../y"]


@pytest.mark.parametrize("name", ESCAPES)
def test_a_download_name_that_leaves_its_folder_is_refused_by_the_writer(tmp_path, name):
    folder = tmp_path / "resources" / "downloads"
    with pytest.raises(DownloadError) as info:
        path_under(folder, name, f"downloads.files.{name}")
    msg = str(info.value)
    assert f"config downloads.files.{name}:" in msg and "plain file name" in msg and "no '/', '..'" in msg
    assert not list(tmp_path.rglob("*.bin"))


@pytest.mark.parametrize(
    "name",
    [
        "amazon_all_48px_v3.1_2023_positives_0.999_cleaned.geojson",
        "aquaculture-faziendas-negatives2025-08.geojson",
        "x1",
    ],
)
def test_plain_download_names_stay_in_their_folder(tmp_path, name):
    assert path_under(tmp_path, name) == tmp_path / name


def _config_with(section: str, name: str) -> dict:
    config = _merged("config.yaml", "amw.yaml")
    config.setdefault("evaluation", {}).setdefault("sources", {})
    if section == "regions":
        config["regions"][name] = {"path": "r.geojson"}
    elif section == "run_regions":
        config["run_regions"] = [name]
    elif section == "downloads.files":
        config["downloads"]["files"][name] = {"url": "https://example.org/x", "sha256": "0" * 64}
    else:
        key = section.split(".")[1]
        config["evaluation"][key][name] = "chips" if key == "chip_sets" else ["a"]
    return config


@pytest.mark.parametrize("section", ["regions", "downloads.files", "evaluation.chip_sets", "evaluation.sources"])
@pytest.mark.parametrize("name", ["../../../escape.bin", "a/b", "my region", "..", "-x", ""])
def test_a_name_that_would_become_a_bad_path_is_refused_when_the_config_is_read(section, name):
    msg = config_error(_config_with(section, name), SCHEMA)
    assert msg is not None and msg.startswith(
        f"config {section}.{name}: the name {name!r} is not allowed under {section}: "
    ), msg
    assert "letters, digits, '_'" in msg and "starting with a letter or digit" in msg


@pytest.mark.parametrize("name", ["a.b", "my.region"])
def test_region_names_take_no_dot_as_the_region_wildcard(name):
    """Region names are Snakemake's {region} wildcard (Snakefile: [A-Za-z0-9][A-Za-z0-9_-]*)."""
    assert "regions." in (config_error(_config_with("regions", name), SCHEMA) or "")
    assert "run_regions[0]" in (config_error(_config_with("run_regions", name), SCHEMA) or "")
    assert config_error(_config_with("evaluation.chip_sets", name), SCHEMA) is None  # a folder name may


def test_the_region_pattern_is_the_wildcard_constraint():
    import re

    schema = yaml.safe_load(SCHEMA.read_text())
    pattern = schema["properties"]["regions"]["propertyNames"]["pattern"]
    assert schema["properties"]["run_regions"]["items"]["pattern"] == pattern
    constraint = re.search(r'^\s+region="([^"]+)"', (ROOT / "Snakefile").read_text(), re.M).group(1)
    # The schema's end is the end of the text ((?![\s\S]): Python's `$` also matches before a final newline).
    assert pattern == f"^{constraint}(?![\\s\\S])"


@pytest.mark.parametrize("section", ["positives.points", "negatives.hard_negative_points"])
def test_a_point_source_label_that_would_lead_out_of_the_training_images_folder_is_refused(section, tmp_path):
    """The label starts each point id, the file name of its training image (results/training_images/positive/ID.tif)."""
    from garimpo.errors import InputDataError
    from garimpo.training.points import load_point_sources

    config = _merged("config.yaml")
    top, key = section.split(".")
    config[top][key] = [{"path": "p.csv", "source": "../../../escape"}]
    assert config_error(config, SCHEMA).startswith(f"config {section}[0].source: '../../../escape' is not allowed: ")
    config[top][key] = [{"path": "p.csv", "source": "amw.2023-v3_1"}]
    assert config_error(config, SCHEMA) is None
    table = tmp_path / "p.csv"
    table.write_text("longitude,latitude\n-55.0,-6.0\n")
    with pytest.raises(InputDataError, match=rf"\[config {section}\[0\]\]: source label '../../../escape' cannot "):
        load_point_sources([{"path": str(table), "source": "../../../escape"}], None, section)
    good, _ = load_point_sources([{"path": str(table)}], None, section)
    assert list(good["point_id"]) == ["p-00002"]


def test_the_workflow_refuses_an_escaping_download_and_a_spaced_region_before_any_job(tmp_path):
    """Through Snakemake: the config is refused when it is read, naming the key; nothing is written."""
    work = workflow_copy(tmp_path / "deep" / "wf")
    escape = {
        "downloads": {"files": {"../../../escape.bin": {"url": "https://example.org/e", "sha256": "0" * 64}}},
        "positives": {"points": [{"path": "resources/downloads/../../../escape.bin"}]},
    }
    (work / "escape.yaml").write_text(yaml.safe_dump(escape))
    spaced = {"regions": {"my region": {"path": "r.geojson"}}, "run_regions": ["my region"]}
    (work / "spaced.yaml").write_text(yaml.safe_dump(spaced))
    first = snakemake(work, pinned("../../../escape.bin"), "--cores", "1", "--configfile", "escape.yaml")
    second = snakemake(work, "-n", "--cores", "1", "--configfile", "spaced.yaml")
    out = first.stdout + first.stderr
    assert first.returncode != 0 and "config downloads.files.../../../escape.bin: the name" in out, out[-3000:]
    out = second.stdout + second.stderr
    assert second.returncode != 0 and "config regions.my region: the name 'my region' is not allowed" in out
    assert "only letters, digits, '_' and '-'" in out and "MissingInput" not in out, out[-3000:]
    assert not list(tmp_path.rglob("escape.bin")) and not (work / "resources").exists()


def test_the_download_script_refuses_an_escaping_name_even_past_the_schema(tmp_path, monkeypatch, restore_logging):
    monkeypatch.chdir(tmp_path)
    name = "../../../escape.bin"
    smk = SimpleNamespace(
        wildcards=SimpleNamespace(name=name),
        output=[f"resources/downloads/{name}"],
        log=[str(tmp_path / "logs" / "dl.log")],
        params=SimpleNamespace(url=(tmp_path / "x").as_uri(), sha256="0" * 64, size=None, max_size_mb=1, deadline_s=10),
        config={"downloads": {"files": {name: {"url": (tmp_path / "x").as_uri(), "sha256": "0" * 64}}}},
    )
    with pytest.raises(DownloadError, match=r"config downloads\.files\.\.\./\.\./\.\./escape\.bin: .*plain file"):
        runpy.run_path(str(ROOT / "scripts" / "download_input.py"), init_globals={"snakemake": smk})
    assert not list(tmp_path.parent.rglob("escape.bin"))


# ---- kind 7: temporary files of killed writers -------------------------------------------------------------


def dead_pid() -> int:
    """The PID of a process that has run and been reaped (free, unless the system reuses it at once)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def temp(
    folder: Path,
    target: str,
    pid: int,
    host: str = HOST,
    suffix: str = ".part",
    size: int = 1000,
    age_s: float = 0.0,
    rand: str = "abcd1234",
) -> Path:
    path = folder / f".{target}.{host}-{pid}.{rand}{suffix}"
    path.write_bytes(b"x" * size)
    if age_s:
        os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


@pytest.fixture
def live():
    """A live process on this host (a writer that is still at work)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_the_next_download_removes_what_a_killed_one_left_and_nothing_live(served, tmp_path, live, caplog):
    folder = tmp_path / "resources" / "downloads"
    folder.mkdir(parents=True)
    gone = dead_pid()
    litter = [
        temp(folder, "points.geojson", gone, size=3 * MIB),  # a killed download of this file
        temp(folder, "other.geojson", gone, rand="zz_99xyz"),  # a killed download of another file
        temp(folder, "E1N1.tif", gone, suffix=".tif.ovr.tmp"),  # GDAL's overview file beside a temp .tif
        temp(folder, "a.json", 1, host="elsewhere_00000000", age_s=2 * DAY),  # another host, untouched 2 days
        folder / ".b.json.k3j4h5g6.json",  # an older version's mkstemp name, untouched 2 days
    ]
    litter[-1].write_text("{")
    os.utime(litter[-1], (time.time() - 2 * DAY, time.time() - 2 * DAY))
    (folder / f".c.tif.{HOST}-{gone}.abcd1234.d").mkdir()  # a killed scratch folder
    (folder / f".c.tif.{HOST}-{gone}.abcd1234.d" / "weights.pth").write_bytes(b"w" * 5000)
    litter.append(folder / f".c.tif.{HOST}-{gone}.abcd1234.d")
    kept = [
        temp(folder, "points.geojson", live, rand="live0001"),  # a live job writing the same file
        temp(folder, "points.geojson", os.getpid(), rand="self0001"),  # this process
        temp(folder, "a.json", 1, host="elsewhere_00000000", age_s=3600, rand="fresh001"),  # an hour ago
        folder / ".b.json.q1w2e3r4.json",  # an older version's name, fresh: its writer may be at work
        folder / ".keep",
        folder / ".notes.abcdefgh.txt",  # not a temporary name of ours
    ]
    for path in kept[3:]:
        path.write_text("mine")
    for path in kept[4:]:  # however old
        os.utime(path, (time.time() - 9 * DAY, time.time() - 9 * DAY))
    with caplog.at_level(logging.WARNING, logger="garimpo.atomic"), FileServer(served) as srv:
        download(f"{srv.url}/points.geojson", folder / "points.geojson", PAYLOAD_SHA, retry=POLICY, sleep=Sleeps())
    assert (folder / "points.geojson").read_bytes() == PAYLOAD
    assert [p.name for p in litter if p.exists()] == []
    assert [p.name for p in kept if not p.exists()] == []
    assert sorted(leftovers(folder)) == sorted(["points.geojson"] + [p.name for p in kept])
    assert f"process {gone} on this host, is gone" in caplog.text and "3.0 MiB" in caplog.text
    assert "written from host elsewhere_00000000, untouched for 48 h" in caplog.text
    assert "of an older version" in caplog.text


def test_a_pid_taken_by_a_newer_process_does_not_keep_a_temp_forever(tmp_path, live):
    """The PID is alive, but its process started after the file's last write: it is not the writer."""
    old = temp(tmp_path, "composite.tif", live, suffix=".tif", age_s=3600)
    fresh = temp(tmp_path, "composite.tif", live, suffix=".tif", rand="fresh001")
    removed = sweep_temps(tmp_path)
    assert [p for p, _ in removed] == [old] and fresh.exists()


def test_a_job_start_sweeps_beside_its_outputs_with_a_warning_in_its_log(tmp_path, monkeypatch, restore_logging):
    from garimpo.smk import setup_logging

    monkeypatch.chdir(tmp_path)
    composites = tmp_path / "results" / "regions" / "demo" / "composites"
    composites.mkdir(parents=True)
    gone = dead_pid()
    litter = temp(composites, "E1N1.tif", gone, suffix=".tif", size=2 * MIB)
    outside = temp(tmp_path.parent, "x.tif", gone)  # an output path leading out: not swept
    smk = SimpleNamespace(
        output=["results/regions/demo/composites/E1N1.tif", "../x.tif"], log=["logs/composite_cell.log"]
    )
    try:
        setup_logging(smk)
        for handler in logging.getLogger().handlers:
            handler.flush()
        text = (tmp_path / "logs" / "composite_cell.log").read_text()
        assert not litter.exists() and outside.exists()
        assert "WARNING garimpo.atomic: removed" in text and litter.name in text and "(2.0 MiB)" in text
        assert f"process {gone} on this host, is gone" in text
    finally:
        outside.unlink()


def test_a_killed_scratch_folder_is_removed_by_the_next_one(tmp_path):
    gone = dead_pid()
    left = tmp_path / f".w.pth.{HOST}-{gone}.abcd1234.d"
    (left / "sub").mkdir(parents=True)
    (left / "sub" / "w.pth.partial").write_bytes(b"w" * 4096)
    atomic._SWEPT.discard(os.path.abspath(tmp_path))
    with scratch_dir(tmp_path / "w.pth") as tmp:
        assert tmp.is_dir() and tmp.name.startswith(f".w.pth.{HOST}-{os.getpid()}.")
        assert not left.exists()
    assert not tmp.exists() and leftovers(tmp_path) == []


def test_imagenet_weights_download_in_a_scratch_folder_beside_the_output(tmp_path, monkeypatch):
    """torch.hub's download goes to a swept folder beside the output (not /tmp), removed afterwards."""
    import torch
    import torchvision

    from garimpo.classifier.weights import fetch_resnet_imagenet

    seen = []

    def fake_hub(url, model_dir, **kwargs):
        seen.append(Path(model_dir))
        (Path(model_dir) / "resnet18-partial.pth").write_bytes(b"x" * 100)
        return torchvision.models.resnet18(weights=None).state_dict()

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_hub)
    out = fetch_resnet_imagenet("resnet18", tmp_path / "weights" / "resnet18-imagenet.pth")
    assert seen[0].parent == out.parent and seen[0].name.startswith(f".resnet18-imagenet.pth.{HOST}-{os.getpid()}.")
    assert leftovers(out.parent) == ["resnet18-imagenet.pth"]


WRITER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from garimpo.atomic import atomic_path
with atomic_path(sys.argv[2], suffix=".part") as tmp, open(tmp, "wb") as fh:
    fh.write(b"x" * 1_000_000)
    fh.flush()
    print(tmp, flush=True)
    time.sleep(60)
"""


def test_sigkill_mid_write_leaves_a_temp_that_only_the_next_attempt_removes(tmp_path):
    """A real writer: kept while it runs (another job sweeping the folder leaves it), removed once killed."""
    target = tmp_path / "cache" / "search-1.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ROOT / "scripts"), str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        tmp = Path(proc.stdout.readline().strip())
        assert tmp.is_file() and tmp.parent == target.parent
        assert sweep_temps(target.parent) == [] and tmp.exists()  # a live writer's file is left alone
        with atomic_path(target.parent / "search-2.json") as other, open(other, "w") as fh:
            fh.write("{}")  # a concurrent job writing in the same cache folder
        assert tmp.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert tmp.exists() and not target.exists()  # the litter of issue 17
    atomic._SWEPT.discard(os.path.abspath(target.parent))
    with atomic_path(target) as again, open(again, "w") as fh:  # the next attempt
        fh.write("[]")
    assert target.read_text() == "[]" and sorted(leftovers(target.parent)) == ["search-1.json", "search-2.json"]


# ---- kind 8: downloads without bounds ----------------------------------------------------------------------


class StreamServer:
    """Answers on 127.0.0.1 by path: /endless (no Content-Length, 64 KiB chunks up to 64 MiB), /huge
    (announces 10 GiB), /payload (PAYLOAD with its length), /nolength (PAYLOAD without one), /drip (no
    length, a byte every 50 ms), /trickle (the status line and headers a byte every 20 ms, for a minute),
    /stall (1000 bytes announced, a byte every 100 ms for 1.5 s, then silence) and /busy (HTTP 503).
    ``sent`` counts the body bytes written, ``requests`` the paths asked for."""

    def __init__(self):
        self.sent = 0
        self.requests: list[str] = []
        self.closing = threading.Event()  # set on exit: handlers still waiting stop
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _head(self, code=200, length=None):
                self.send_response(code)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                self.end_headers()

            def _send(self, data):
                self.wfile.write(data)
                self.wfile.flush()
                server.sent += len(data)

            def do_GET(self):
                server.requests.append(self.path)
                path = self.path.split("?")[0]  # a query string (a signature) changes nothing here
                try:
                    if path == "/endless":
                        self._head()
                        for _ in range(64 * 16):
                            self._send(b"e" * (64 << 10))
                    elif path == "/huge":
                        self._head(length=10 << 30)
                        self._send(b"h" * 1024)
                    elif path in ("/payload", "/nolength"):
                        self._head(length=len(PAYLOAD) if path == "/payload" else None)
                        self._send(PAYLOAD)
                    elif path == "/drip":
                        self._head()
                        for _ in range(400):
                            self._send(b"d")
                            time.sleep(0.05)
                    elif path == "/trickle":
                        head = b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\nX-Padding: " + b"p" * 3000 + b"\r\n\r\n"
                        for i in range(len(head)):
                            self.wfile.write(head[i : i + 1])
                            self.wfile.flush()
                            if server.closing.wait(0.02):
                                return
                    elif path == "/stall":
                        self._head(length=1000)
                        for _ in range(15):
                            self._send(b"s")
                            time.sleep(0.1)
                        server.closing.wait(60)
                    else:
                        self._head(503, length=0)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()


def test_a_stream_without_length_is_stopped_at_the_cap(tmp_path):
    dest = tmp_path / "dl" / "big.bin"
    sleeps = Sleeps()
    with StreamServer() as srv:
        with pytest.raises(DownloadError) as info:
            download(
                f"{srv.url}/endless",
                dest,
                PAYLOAD_SHA,
                retry=POLICY,
                sleep=sleeps,
                max_bytes=1 * MIB,
                key="downloads.files.big.bin",
            )
        time.sleep(0.2)
    msg = str(info.value)
    assert f"refused {srv.url}/endless: the server sent more than {MIB} bytes without announcing a length" in msg
    assert "downloads.max_size_mb = 1 MiB" in msg and "downloads.files.big.bin.url" in msg and str(dest) in msg
    assert srv.requests == ["/endless"] and sleeps == []  # not retried
    assert srv.sent < 40 * MIB  # the download stopped reading: the 64 MiB were never all sent
    assert leftovers(dest.parent) == []


def test_an_announced_length_over_the_cap_is_refused_before_the_body(tmp_path):
    dest = tmp_path / "big.bin"
    with StreamServer() as srv:
        with pytest.raises(
            DownloadError,
            match=r"the server announces 10737418240 bytes, over the cap "
            r"downloads\.max_size_mb = 2048 MiB",
        ) as info:
            download(f"{srv.url}/huge", dest, PAYLOAD_SHA, retry=POLICY, sleep=Sleeps(), max_bytes=2048 * MIB)
    assert "raise downloads.max_size_mb" in str(info.value)
    assert srv.requests == ["/huge"] and leftovers(tmp_path) == []


@pytest.mark.parametrize("path", ["/payload", "/nolength"])
def test_a_pinned_size_refuses_another_file_at_once(tmp_path, path):
    dest = tmp_path / "p.geojson"
    key = "downloads.files.p.geojson"
    with StreamServer() as srv:
        with pytest.raises(DownloadError) as info:
            download(f"{srv.url}{path}", dest, PAYLOAD_SHA, retry=POLICY, sleep=Sleeps(), size=100, key=key)
        download(f"{srv.url}{path}", dest, PAYLOAD_SHA, retry=POLICY, sleep=Sleeps(), size=len(PAYLOAD), key=key)
    said = (
        f"the server announces {len(PAYLOAD)} bytes"
        if path == "/payload"
        else "the server sent more than 100 bytes without announcing a length"
    )
    assert f"refused {srv.url}{path}: {said}, but {key}.size pins 100 bytes" in str(info.value)
    assert f"update {key}.size and {key}.sha256" in str(info.value)
    assert srv.requests == [path, path] and dest.read_bytes() == PAYLOAD  # refused once, then the right size
    assert leftovers(tmp_path) == ["p.geojson"]


def test_a_pinned_size_over_the_cap_is_refused_before_any_request(tmp_path):
    with StreamServer() as srv:
        with pytest.raises(
            DownloadError,
            match=r"downloads\.files\.x\.size pins 5000000 bytes, more than "
            r"downloads\.max_size_mb = 1 MiB",
        ):
            download(
                f"{srv.url}/payload",
                tmp_path / "x",
                PAYLOAD_SHA,
                size=5_000_000,
                max_bytes=MIB,
                key="downloads.files.x",
            )
    assert srv.requests == []


def test_a_dripping_server_meets_the_overall_deadline(tmp_path):
    dest = tmp_path / "slow.bin"
    began = time.monotonic()
    with StreamServer() as srv:
        with pytest.raises(DownloadError) as info:
            download(f"{srv.url}/drip", dest, PAYLOAD_SHA, retry=POLICY, sleep=Sleeps(), deadline_s=1.0)
    assert time.monotonic() - began < 5  # the socket never timed out: only the deadline stops it
    msg = str(info.value)
    assert f"gave up downloading {srv.url}/drip after 1 s and 1 attempt(s)" in msg
    assert "the deadline downloads.deadline_s = 1 s" in msg and "raise downloads.deadline_s" in msg
    assert leftovers(tmp_path) == []


@pytest.fixture
def slow_lookup(monkeypatch):
    """Name lookups hang (as a dead DNS server's do) until the test ends."""
    release = threading.Event()
    lookup = socket.getaddrinfo

    def hanging(*args, **kwargs):
        release.wait(60)
        return lookup(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    yield
    release.set()


@pytest.mark.parametrize(
    "phase, path, deadline_s, said",
    [
        ("lookup", "/payload", 1.0, "no complete answer yet: the status line and headers were still arriving"),
        ("headers", "/trickle", 1.0, "no complete answer yet: the status line and headers were still arriving"),
        # A byte every 100 ms, then silence from 1.5 s: a read timing out alone would end at 1.5 + 2 s.
        ("body", "/stall", 2.0, "bytes received in this attempt"),
    ],
)
def test_the_deadline_bounds_every_phase_of_an_attempt(tmp_path, request, phase, path, deadline_s, said):
    """urllib's timeout bounds each socket read, not a phase: a server that sends its headers a byte at a
    time (each read well within the timeout), a hanging name lookup or a body that stalls late would
    otherwise outlive downloads.deadline_s by minutes."""
    if phase == "lookup":
        request.getfixturevalue("slow_lookup")
    dest = tmp_path / "dl" / "slow.bin"
    with StreamServer() as srv:
        began = time.monotonic()
        with pytest.raises(DownloadError) as info:
            download(f"{srv.url}{path}", dest, PAYLOAD_SHA, retry=POLICY, sleep=Sleeps(), deadline_s=deadline_s)
        took = time.monotonic() - began
        if phase == "headers":  # the thread left reading the headers ends once its socket is shut down
            for thread in threading.enumerate():
                if thread.name == "garimpo-download-open":
                    thread.join(timeout=2)
                    assert not thread.is_alive()
    assert took < deadline_s + 0.9, took
    msg = str(info.value)
    assert f"gave up downloading {srv.url}{path} after {deadline_s:.0f} s and 1 attempt(s)" in msg
    assert f"the download was still running ({'' if phase != 'body' else '15 '}{said}) at the deadline" in msg
    assert f"downloads.deadline_s = {deadline_s:g} s" in msg
    assert leftovers(dest.parent) == []
    assert srv.requests == ([] if phase == "lookup" else [path])


def test_the_deadline_covers_retries_and_their_waits(tmp_path):
    """Ten attempts 10, 20, 40 s apart would take minutes; a 25 s deadline ends them after the second."""
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    policy = RetryPolicy(attempts=10, base_delay=10.0, max_delay=60.0, timeout=5.0)
    with StreamServer() as srv:
        with pytest.raises(DownloadError) as info:
            download(
                f"{srv.url}/busy",
                tmp_path / "x.bin",
                PAYLOAD_SHA,
                retry=policy,
                sleep=sleep,
                deadline_s=25,
                clock=lambda: now[0],
            )
    assert srv.requests == ["/busy", "/busy"] and now[0] == 10.0
    assert (
        "after 10 s and 2 attempt(s): the last error was HTTP 503 Service Unavailable, and the 20 s wait "
        "before the next attempt would end after the deadline downloads.deadline_s = 25 s"
    ) in str(info.value)
    assert leftovers(tmp_path) == []


def test_the_download_rule_passes_the_bounds_from_the_config(served, tmp_path):
    """The rule on the local server: a pinned size that fits lands; a wrong one and one over the cap fail."""
    work = workflow_copy(tmp_path / "wf")
    with FileServer(served) as srv:
        url = f"{srv.url}/points.geojson"
        files = {
            "sized.geojson": {"url": url, "sha256": PAYLOAD_SHA, "size": len(PAYLOAD)},
            "wrong.geojson": {"url": url, "sha256": PAYLOAD_SHA, "size": 10},
        }
        (work / "extra.yaml").write_text(yaml.safe_dump({"downloads": {"files": files}}))
        (work / "capped.yaml").write_text(
            yaml.safe_dump(
                {"downloads": {"max_size_mb": 0.001, "files": {"capped.geojson": {"url": url, "sha256": PAYLOAD_SHA}}}}
            )
        )
        run = snakemake(
            work,
            pinned("sized.geojson"),
            pinned("wrong.geojson"),
            "--keep-going",
            "--cores",
            "1",
            "--configfile",
            "extra.yaml",
        )
        capped = snakemake(work, pinned("capped.geojson"), "--cores", "1", "--configfile", "capped.yaml")
    assert run.returncode != 0 and capped.returncode != 0
    assert (work / pinned("sized.geojson")).read_bytes() == PAYLOAD
    assert leftovers(work / "resources" / "downloads") == ["sized.geojson"]
    wrong = (work / "logs" / "download_input_wrong.geojson.log").read_text()
    assert f"the server announces {len(PAYLOAD)} bytes, but downloads.files.wrong.geojson.size pins 10" in wrong
    log = (work / "logs" / "download_input_capped.geojson.log").read_text()
    assert "over the cap downloads.max_size_mb = 0.001 MiB" in log and "downloads.files.capped.geojson.url" in log


def test_a_signed_url_stays_out_of_snakemake_output_and_records(tmp_path):
    """Snakemake prints changed params (before and now) and keeps them in .snakemake/: the rule's url param
    is redacted and the script reads the signed URL from the config. A rotated signature reruns nothing
    (the sha256 pins the content); a changed path does, and is printed without its query."""
    work = workflow_copy(tmp_path / "wf")
    with StreamServer() as srv:

        def run(path, sig):
            url = f"{srv.url}{path}?se=2030-01-01&sp=r&sig={sig}"
            files = {"signed.geojson": {"url": url, "sha256": PAYLOAD_SHA}}
            (work / "signed.yaml").write_text(yaml.safe_dump({"downloads": {"files": files}}))
            return snakemake(work, pinned("signed.geojson"), "--cores", "1", "--configfile", "signed.yaml")

        runs = [run("/payload", "SECRETfirst"), run("/payload", "SECRETrotated"), run("/nolength", "SECRETmoved")]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr[-4000:]
    outs = [proc.stdout + proc.stderr for proc in runs]
    assert [n for n, out in enumerate(outs) if "SECRET" in out] == [], outs
    records = [p for p in (work / ".snakemake").rglob("*") if p.is_file()] + list((work / "logs").rglob("*.log"))
    assert any("metadata" in p.parts for p in records) and any("log" in p.parts for p in records)
    assert [str(p) for p in records if b"SECRET" in p.read_bytes()] == []
    # The script fetched the signed URLs; the rotated one was not fetched again.
    assert srv.requests == [
        "/payload?se=2030-01-01&sp=r&sig=SECRETfirst",
        "/nolength?se=2030-01-01&sp=r&sig=SECRETmoved",
    ]
    assert "Nothing to be done" in outs[1]
    assert "Params have changed" in outs[2] and f"{srv.url}/nolength" in outs[2]
    assert (work / pinned("signed.geojson")).read_bytes() == PAYLOAD
