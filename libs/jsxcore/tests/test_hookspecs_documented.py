"""Every hook spec documents each argument, its return value and the version
it was added in (DESIGN.md §4) — and the docs page lists every hook."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from jsxcore import hookspecs
from jsxcore.hookspecs import HOOK_NAMES, PROJECT

DOCS = Path(__file__).resolve().parents[3] / "docs" / "plugins.md"


def test_hook_names_are_every_spec() -> None:
    marked = {n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, f"{PROJECT}_spec")}
    assert marked == set(HOOK_NAMES) and len(HOOK_NAMES) >= 7


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_hookspec_is_documented(name: str) -> None:
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert doc.split("\n", 1)[0].strip(), f"{name}: missing summary line"
    for param in inspect.signature(fn).parameters:
        assert re.search(rf"^:param {param}:\s*\S", doc, re.M), f"{name}: parameter {param!r} undocumented"
    documented = set(re.findall(r"^:param (\w+):", doc, re.M))
    assert documented <= set(inspect.signature(fn).parameters), f"{name}: documents unknown parameters"
    assert re.search(r"^:returns?:\s*\S", doc, re.M), f"{name}: return value undocumented"
    assert re.search(r"^\.\. versionadded:: \d+\.\d+", doc, re.M), f"{name}: missing '.. versionadded:: X.Y'"
    assert inspect.signature(fn).return_annotation is not inspect.Signature.empty, f"{name}: no return type"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_docs_reference_lists_hook(name: str) -> None:
    assert f"### `{name}(" in DOCS.read_text(encoding="utf-8"), f"docs/plugins.md lacks a reference entry for {name}"
