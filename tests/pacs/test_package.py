"""The package's shape: a table of contents that lists every module, rooms of bounded size,
storage decided in the store alone, every error under one root.

These are the re-housing's promises to a newcomer: a concept is found by its name, no module
or function is too big to read, and no room re-decides where bytes live.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import pacs
from pacs.errors import PacsError

PACKAGE = Path(pacs.__file__).parent
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _modules() -> list[str]:
    names = ["pacs"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="pacs."):
        names.append(info.name)
    return sorted(names)


def _sources() -> dict[str, Path]:
    return {str(p.relative_to(PACKAGE)): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_table_of_contents_lists_every_module_and_only_modules() -> None:
    doc = pacs.__doc__ or ""
    listed = set(re.findall(r"^\s+- ``([a-z_.]+)``", doc, flags=re.M))
    modules = {m.removeprefix("pacs.") for m in _modules() if m != "pacs"}
    assert modules - listed == set(), f"modules missing from pacs/__init__.py: {sorted(modules - listed)}"
    assert listed - modules == set(), f"listed but not modules: {sorted(listed - modules)}"


@pytest.mark.parametrize("name", _modules())
def test_every_module_imports_and_says_what_it_is(name: str) -> None:
    if name.endswith("__main__"):
        pytest.skip("runs the command when imported")
    module = importlib.import_module(name)
    assert (module.__doc__ or "").strip(), f"{name} has no module docstring"


def test_no_module_over_600_lines_and_no_function_over_80() -> None:
    too_long: list[str] = []
    for rel, path in _sources().items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}: {lines} lines")
    assert too_long == []


def test_local_versus_object_storage_is_decided_in_the_store_alone() -> None:
    decides = re.compile(r"\bis_local\b|\.protocol\b|infer_storage_options|local_fs\(")
    mentions = {rel for rel, path in _sources().items() if decides.search(path.read_text())}
    assert mentions <= {"store/__init__.py", "store/location.py"}, sorted(mentions)


def test_one_atomic_writer_publishes_files() -> None:
    """Only the store's backends rename temporary files into place or put objects; the journal,
    the snapshot, the reports and the alerts all write through ``store.put`` / ``store.writer``."""
    writers = re.compile(r"\bos\.replace\(|\.pipe_file\(|\bos\.rename\(|_call_s3\(\s*\"put_object\"")
    outside = {rel for rel, path in _sources().items()
               if writers.search(path.read_text()) and not rel.startswith("store/")}
    assert outside == set(), sorted(outside)


def test_every_exception_derives_from_the_one_root() -> None:
    strays: list[str] = []
    for name in _modules():
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__.startswith("pacs") \
                    and not issubclass(obj, PacsError):
                strays.append(f"{name}.{attr}")
    assert strays == []


def test_one_place_sets_duckdb_memory() -> None:
    setters = {rel for rel, path in _sources().items() if re.search(r"memory_limit\s*=", path.read_text())
               and "SET memory_limit" in path.read_text()}
    assert setters == {"catalogue/db.py"}, sorted(setters)


# The README's concepts and the room a newcomer finds each in, by its name.
CONCEPTS = {
    "study": "catalogue", "series": "catalogue", "tier": "tiers", "quarantine": "intake.quarantine",
    "recall": "tiers.recall", "snapshot": "catalogue.snapshot", "journal": "journal",
    "fixity": "tiers.fixity", "lifecycle": "tiers.lifecycle",
}


@pytest.mark.parametrize(("concept", "room"), CONCEPTS.items())
def test_each_concept_has_a_home_named_after_it(concept: str, room: str) -> None:
    module = importlib.import_module(f"pacs.{room}")
    assert concept in room or concept in (module.__doc__ or "").lower().split("\n")[0], \
        f"pacs.{room} does not say it is the home of {concept}"
