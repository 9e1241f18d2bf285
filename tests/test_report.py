"""The Snakemake report: every report() output names a caption that exists and renders, and the check of a built
report zip (``check_report_zip``, which the workflow test calls on the report of the demo run)."""

import re
import zipfile
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULE_FILES = sorted((ROOT / "rules").glob("*.smk"))
# Snakemake writes a zip report as <stem>/report.html with each result at <stem>/data/raw/<id>/<file name>
# (snakemake.report.html_reporter, Snakemake 9).
REPORT_INDEX = "report.html"


def check_report_zip(zip_path, expected_names) -> list[str]:
    """Assert that ``zip_path`` is a Snakemake zip report holding every file name (basename) in ``expected_names``.

    Checks that the zip has its ``report.html`` index at ``<stem>/report.html`` and that each expected name is the
    basename of some entry under ``<stem>/data/``. Returns the zip's entry names.
    """
    with zipfile.ZipFile(zip_path) as zf:
        entries = zf.namelist()
        assert zf.testzip() is None, f"{zip_path}: a corrupt entry"
    indexes = [e for e in entries if PurePosixPath(e).name == REPORT_INDEX and len(PurePosixPath(e).parts) == 2]
    assert len(indexes) == 1, f"{zip_path}: expected one <folder>/{REPORT_INDEX}, found {indexes} among {entries}"
    folder = PurePosixPath(indexes[0]).parts[0]
    data = {PurePosixPath(e).name for e in entries if e.startswith(f"{folder}/data/") and not e.endswith("/")}
    missing = sorted(set(map(str, expected_names)) - data)
    assert not missing, f"{zip_path}: no entry for {missing}; the report holds {sorted(data)}"
    return entries


def report_calls(text: str) -> list[str]:
    """The text of every ``report(...)`` call in a rule file (balanced parentheses; strings hold none here)."""
    calls = []
    for match in re.finditer(r"\breport\(", text):
        depth, i = 0, match.end() - 1
        for i in range(match.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                break
        calls.append(text[match.start() : i + 1])
    return calls


def caption_paths() -> list[tuple[str, Path]]:
    """(rule file name, caption path) of every report() call; a caption path is relative to its rule file."""
    out = []
    for path in RULE_FILES:
        for call in report_calls(path.read_text()):
            found = re.search(r"caption\s*=\s*\"([^\"]+)\"", call)
            assert found, f"{path.name}: a report() output without a caption: {call}"
            out.append((path.name, (path.parent / found.group(1)).resolve()))
    return out


def test_every_report_output_names_an_existing_caption():
    captions = caption_paths()
    assert captions, "no report() output in rules/*.smk"
    missing = [f"{rule}: {path}" for rule, path in captions if not path.is_file()]
    assert not missing, f"captions named but missing: {missing}"
    for rule, path in captions:
        assert path.suffix == ".rst" and path.parent == ROOT / "report", f"{rule}: {path} is not report/*.rst"


def test_every_report_output_has_a_category():
    for path in RULE_FILES:
        for call in report_calls(path.read_text()):
            assert re.search(r"category\s*=", call), f"{path.name}: a report() output without a category: {call}"


def test_report_calls_are_found_whole():
    text = 'out=report(\n    "a_{x}.png",\n    caption="../report/a.rst",\n    labels={"x": "{x}"},\n),\nlog: "l"'
    assert report_calls(text) == [text[4 : text.index("),") + 1]]


def test_the_global_report_text_exists():
    found = re.search(r'^report:\s*"([^"]+)"', (ROOT / "Snakefile").read_text(), re.MULTILINE)
    assert found, "the Snakefile has no global report: directive"
    assert (ROOT / found.group(1)).is_file()


def _merge(base: dict, extra: dict) -> dict:
    """``extra`` over ``base``, nested dicts merged (as Snakemake merges config files)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _config(*names: str) -> dict:
    from snakemake.utils import validate

    config: dict = {}
    for name in names:
        config = _merge(config, yaml.safe_load((ROOT / "config" / name).read_text()))
    validate(config, str(ROOT / "config" / "schema.yaml"))  # fills in the schema's defaults
    return config


class _Caption:
    """What Snakemake passes to a caption as ``snakemake`` (the parts the captions use)."""

    def __init__(self, config: dict):
        self.config = config
        self.wildcards = {"region": "demo", "name": "heldout"}
        self.params, self.input, self.output = {}, [], []


# writer_name as Snakemake passes it (docutils 0.22 plans to drop it; older ones lack writer="html").
@pytest.mark.filterwarnings('ignore:Argument "writer_name":PendingDeprecationWarning')
@pytest.mark.parametrize("configs", [("config.yaml",), ("config.yaml", "demo.yaml")], ids=["default", "demo"])
def test_captions_render_to_html_without_warnings(configs):
    """Jinja as Snakemake's report renders it (trim_blocks, lstrip_blocks), then reStructuredText, warnings fatal."""
    from docutils.core import publish_parts
    from jinja2 import Environment, StrictUndefined

    env = Environment(trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined)
    snakemake = _Caption(_config(*configs))
    for path in sorted((ROOT / "report").glob("*.rst")):
        text = env.from_string(path.read_text()).render(snakemake=snakemake, categories={}, files=[])
        assert "{{" not in text and "{%" not in text, path.name
        # A block tag at a line's end eats the newline (trim_blocks): "2024.Each" means words were run together.
        assert not re.search(r"[a-z0-9]\.[A-Z][a-z]", text), f"{path.name}: lines run together:\n{text}"
        html = publish_parts(
            text, writer_name="html", settings_overrides={"report_level": 2, "halt_level": 2, "traceback": True}
        )["html_body"]
        assert html.strip(), path.name
        assert "None" not in text, f"{path.name}: a null config value printed as None:\n{text}"


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_check_report_zip_accepts_a_report(tmp_path):
    path = _zip(
        tmp_path / "report.zip",
        {
            "report/report.html": b"<html></html>",
            "report/data/raw/0123abcd/demo_overview.png": b"png",
            "report/data/raw/4567ef01/demo_protected_areas.csv": b"name\n",
        },
    )
    entries = check_report_zip(path, ["demo_overview.png", "demo_protected_areas.csv"])
    assert "report/report.html" in entries
    assert check_report_zip(path, [])


def test_check_report_zip_refuses_a_missing_result(tmp_path):
    path = _zip(tmp_path / "r.zip", {"r/report.html": b"", "r/data/raw/01/demo_overview.png": b""})
    with pytest.raises(AssertionError, match="demo_over_time.png"):
        check_report_zip(path, ["demo_overview.png", "demo_over_time.png"])


def test_check_report_zip_refuses_a_zip_without_its_index(tmp_path):
    path = _zip(tmp_path / "r.zip", {"r/data/raw/01/demo_overview.png": b"", "r/sub/report.html": b""})
    with pytest.raises(AssertionError, match="report.html"):
        check_report_zip(path, ["demo_overview.png"])


def test_check_report_zip_does_not_count_the_index_as_a_result(tmp_path):
    path = _zip(tmp_path / "r.zip", {"r/report.html": b""})
    with pytest.raises(AssertionError, match="report.html"):
        check_report_zip(path, ["report.html"])
