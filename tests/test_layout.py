"""The package's layers: a module imports only from its own unit or from units below it.

Lower units know nothing of the stages built on them, so a new sensor goes into ``imagery`` and a new
proposer into ``detection`` without touching what lies under them; and product code never imports the
synthetic worlds and benchmarks.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "scripts" / "garimpo"

# Lowest first. Units on one line are on one level and may not import each other.
LAYERS = [
    {"errors"},
    {"atomic", "contract", "schema"},
    {"geo", "pixels"},
    {"imagery"},
    {"training"},
    {"classifier"},
    {"detection"},
    {"change"},
    {"outputs"},
    {"publish"},
    {"synthetic", "smk", "config"},
]
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def _unit(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "garimpo"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the package imports itself by absolute names"
            if node.module and node.module.split(".")[0] == "garimpo":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "garimpo"}
    return found


def test_every_unit_has_a_level():
    units = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    units |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert units == set(LEVEL), "add the new unit to LAYERS (and to the README's layout)"


def test_imports_only_go_down():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        unit = _unit(dotted)
        for target in _imports(path):
            other = _unit(target)
            if other in ("garimpo", unit):
                continue
            if LEVEL[other] >= LEVEL[unit]:
                wrong.append(f"{dotted} imports {target} ({other} is not below {unit})")
    assert not wrong, "\n".join(wrong)


def test_each_rule_runs_the_script_of_its_name():
    import re

    rules = Path(__file__).resolve().parent.parent / "rules"
    pairs = []
    for smk in sorted(rules.glob("*.smk")):
        for block in re.split(r"\n(?=(?:rule|checkpoint) )", smk.read_text()):
            name = re.match(r"(?:rule|checkpoint) (\w+):", block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+)\.py"', block)
            if name and script:
                pairs.append((name.group(1), script.group(1)))
    assert len(pairs) > 10
    assert [p for p in pairs if p[0] != p[1]] == []
