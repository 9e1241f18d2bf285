"""Domain errors live in one module, and a public function says which errors it raises."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import garimpo.errors as errors

PACKAGE = Path(__file__).resolve().parents[1] / "scripts" / "garimpo"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def test_every_exception_class_is_in_errors_py():
    elsewhere = []
    for path, tree in _modules():
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):  # private: control flow only
                bases = [ast.unparse(b) for b in node.bases]
                if any(b.endswith(("Error", "Exception")) for b in bases):
                    elsewhere.append(f"{path.relative_to(PACKAGE)}: {node.name}({', '.join(bases)})")
    assert not elsewhere, "exception classes outside garimpo/errors.py:\n" + "\n".join(elsewhere)


def test_domain_errors_derive_from_garimpo_error():
    for name, obj in vars(errors).items():
        if inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == errors.__name__:
            assert issubclass(obj, errors.GarimpoError), name
            assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"


DOMAIN_ERRORS = {
    name
    for name, obj in vars(errors).items()
    if inspect.isclass(obj) and issubclass(obj, errors.GarimpoError) and name != "GarimpoError"
}


def _raised_domain_errors(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Domain error classes a function raises in its own body (nested functions excluded)."""
    found: set[str] = set()
    stack = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            continue
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.attr if isinstance(exc, ast.Attribute) else getattr(exc, "id", None)
            if name in DOMAIN_ERRORS:
                found.add(name)
        stack.extend(ast.iter_child_nodes(node))
    return found


def test_public_functions_document_the_domain_errors_they_raise():
    """A public function (module level or public method) that raises a domain error names it in its docstring."""
    undocumented = []
    for path, tree in _modules():
        if "synthetic" in path.parts:
            continue  # generators for tests and benchmarks, not product code
        scopes = [tree] + [n for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]
        for scope in scopes:
            for fn in scope.body:
                if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or fn.name.startswith("_"):
                    continue
                raised = _raised_domain_errors(fn)
                doc = ast.get_docstring(fn) or ""
                missing = sorted(e for e in raised if e not in doc)
                if missing:
                    where = f"{path.relative_to(PACKAGE)}:{fn.lineno} {fn.name}"
                    undocumented.append(f"{where} raises {missing}")
    assert not undocumented, "public functions whose docstring does not name what they raise:\n" + "\n".join(
        undocumented
    )
