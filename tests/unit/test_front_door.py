"""The producer's front door: `from orchestration import ...` gives every name the README uses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orchestration
from workers.errors import ChorusError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_exported_name_resolves_to_its_owner() -> None:
    assert sorted(orchestration.__all__) == sorted(orchestration._EXPORTS)
    for name in orchestration.__all__:
        assert getattr(orchestration, name) is not None, name


def test_the_readme_imports_only_from_the_front_door() -> None:
    imports = re.findall(r"^from (orchestration\S*) import (.+)$", README.read_text(), re.M)
    assert imports, "the README shows Python imports"
    for module, names in imports:
        assert module == "orchestration", f"the README imports from {module}"
        for name in re.split(r",\s*", names):
            assert name.split(" as ")[0].strip() in orchestration.__all__, name


def test_importing_the_package_loads_no_celery() -> None:
    code = "import sys, orchestration; print('celery' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_producer_errors_are_in_the_one_tree_and_keep_their_builtin() -> None:
    for name, builtin in (
        ("BatchInputError", ValueError),
        ("InvalidBatchFile", ValueError),
        ("PatternError", ValueError),
        ("BatchNotFound", LookupError),
        ("StateUnavailable", RuntimeError),
    ):
        cls = getattr(orchestration, name)
        assert issubclass(cls, ChorusError) and issubclass(cls, builtin), name


def test_the_readme_layout_names_every_module() -> None:
    text = README.read_text()
    layout = text[text.index("## Layout") : text.index("Dependencies flow one way")]
    root = README.parent
    for package in ("config", "workers", "orchestration"):
        for path in sorted((root / package).glob("*.py")):
            if path.name != "__init__.py":
                assert f"  {path.name} " in layout, f"{package}/{path.name} is not in the layout"
        for sub in sorted(p for p in (root / package).iterdir() if (p / "__init__.py").exists()):
            assert f"  {sub.name}/" in layout, f"{package}/{sub.name}/ is not in the layout"
