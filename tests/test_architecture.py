"""The layer order of docs/architecture.md, enforced over the import graph.

Every module of the package is parsed with ``ast``; every import (module level, function level, under
``if TYPE_CHECKING``) is an edge from the importing unit to the imported one. A unit is a top-level
module (``keys``, ``config``, ...) or a subpackage (``models``, ``training``, ...); the package root
(``remixformer/__init__.py``, which re-exports the model API) is the unit ``__init__``.

Rules:
1. A unit imports only itself and units of lower layers (same layer = no edge either way).
2. Outside ``cli/`` (and ``__main__``) imports sit at module level, so that the edges are visible;
   the exceptions are the libraries in ``LAZY_LIBRARIES`` (heavy to import or optional), each with
   its reason, and the ``LAZY_EXCEPTIONS`` below (none today).
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

import remixformer

PACKAGE_DIR = Path(remixformer.__file__).parent

# lowest first; imports go strictly downwards
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation: names and schemas", ("keys", "tasks", "faults", "schema")),
    ("foundation: modality letters", ("modalities",)),
    ("foundation: serialization", ("serialization",)),
    ("foundation: config engine", ("config",)),
    ("blocks", ("layers",)),
    ("models and data", ("models", "data")),
    ("public model API (package root)", ("__init__",)),
    ("evaluation and run infrastructure", ("evaluation", "engine")),
    ("applications", ("training", "pretrain", "explain", "serving")),
    ("tools", ("study", "bench", "demo")),
    ("command line", ("cli",)),
    ("entry point (python -m remixformer)", ("__main__",)),
]

# units whose modules may import anything lazily (the command line keeps `--help` fast)
LAZY_UNITS = ("cli", "__main__")

# top-level names of libraries that may be imported inside functions anywhere, and why
LAZY_LIBRARIES: dict[str, str] = {
    "timm": "slow to import (pulls in huggingface_hub); only needed when a timm backbone or weight "
    "file is built, so serving and the CLI start without it",
    "lightning": "slow to import; only needed when a run builds its Trainer",
    "matplotlib": "slow to import and to pick a backend; only needed when a figure is drawn",
    "scipy": "scipy.stats is slow to import; only needed for t-tests and likelihoods",
    "resource": "POSIX-only standard module (absent on Windows); only the memory benchmark reads it",
    "onnx": "optional dependency (the `onnx` extra); only ONNX export and the onnxruntime backend use it",
    "onnxruntime": "optional dependency (the `onnx` extra); only the onnxruntime backend uses it",
    "onnxscript": "optional dependency (the `onnx` extra) that torch's ONNX exporter needs; imported "
    "to say so when it is missing",
    "huggingface_hub": "only needed to download a model from the Hub (from_pretrained of a repository "
    "id); local folders load without it",
}

# (path relative to the package, imported module): why it must stay inside a function
LAZY_EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    path: str  # relative to the package directory
    line: int
    module: str  # absolute module name imported
    lazy: bool


def _units(package_dir: Path) -> set[str]:
    units = {"__init__"}
    for p in package_dir.iterdir():
        if p.is_dir() and (p / "__init__.py").exists():
            units.add(p.name)
        elif p.suffix == ".py" and p.name != "__init__.py":
            units.add(p.stem)
    return units


def _module_name(package: str, rel: Path) -> list[str]:
    parts = [package, *rel.with_suffix("").parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def imports_of(package_dir: Path, package: str) -> list[Import]:
    """Every import in every module of the package, with whether it sits inside a function."""
    out: list[Import] = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir)
        name = _module_name(package, rel)
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        lazy_nodes: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                lazy_nodes.update(
                    id(n) for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))
                )
        for node in ast.walk(tree):
            lazy = id(node) in lazy_nodes
            if isinstance(node, ast.Import):
                for alias in node.names:
                    out.append(Import(str(rel), node.lineno, alias.name, lazy))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name if is_pkg else name[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                if module == "__future__":
                    continue
                # `from pkg import sub` imports the submodule `pkg.sub` when there is one
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    sub_path = package_dir.joinpath(*sub.split(".")[1:])
                    is_sub = module.split(".")[0] == package and (
                        sub_path.with_suffix(".py").exists() or (sub_path / "__init__.py").exists()
                    )
                    out.append(Import(str(rel), node.lineno, sub if is_sub else module, lazy))
    return out


def unit_of(module: str, package: str) -> str | None:
    parts = module.split(".")
    if parts[0] != package:
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def check(
    package_dir: Path,
    package: str,
    layers: list[tuple[str, tuple[str, ...]]],
    *,
    lazy_units: tuple[str, ...] = LAZY_UNITS,
    lazy_libraries: dict[str, str] | None = None,
    lazy_exceptions: dict[tuple[str, str], str] | None = None,
) -> list[str]:
    """The violations of the layer order (one line each); empty when the package keeps it."""
    lazy_libraries = LAZY_LIBRARIES if lazy_libraries is None else lazy_libraries
    lazy_exceptions = LAZY_EXCEPTIONS if lazy_exceptions is None else lazy_exceptions
    rank = {u: i for i, (_, units) in enumerate(layers) for u in units}
    layer_name = {u: name for name, units in layers for u in units}
    problems = []
    units = _units(package_dir)
    for u in sorted(units - rank.keys()):
        problems.append(f"{package}.{u} has no layer: add it to the layer order")
    for imp in imports_of(package_dir, package):
        src = unit_of(".".join(_module_name(package, Path(imp.path))), package)
        dst = unit_of(imp.module, package)
        where = f"{package}/{imp.path}:{imp.line}"
        if dst is not None and src in rank and dst in rank and src != dst and rank[dst] >= rank[src]:
            problems.append(
                f"{where} imports {imp.module}: {src} ({layer_name[src]}) may not import "
                f"{dst} ({layer_name[dst]})"
            )
        if imp.lazy and src not in lazy_units:
            top = imp.module.split(".")[0]
            if dst is not None:
                if (imp.path, imp.module) not in lazy_exceptions:
                    problems.append(
                        f"{where}: {imp.module} is imported inside a function; import it at the top"
                    )
            elif top not in lazy_libraries:
                problems.append(
                    f"{where}: {imp.module} is imported inside a function; import it at the top "
                    "(or list it in LAZY_LIBRARIES with a reason)"
                )
    return problems


# ----------------------------------------------------------------------------------------------------


def test_the_package_keeps_the_layer_order():
    problems = check(PACKAGE_DIR, "remixformer", LAYERS)
    assert not problems, "\n".join(problems)


def test_every_layer_unit_exists_and_is_listed_once():
    listed = [u for _, units in LAYERS for u in units]
    assert len(listed) == len(set(listed))
    assert set(listed) == _units(PACKAGE_DIR)


def test_every_exception_has_a_reason():
    assert all(r.strip() for r in [*LAZY_LIBRARIES.values(), *LAZY_EXCEPTIONS.values()])


def test_the_layer_order_is_written_in_the_architecture_doc():
    doc = (PACKAGE_DIR.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## Layer order", 1)[1].split("\n## ", 1)[0]
    for _name, units in LAYERS:
        for u in units:
            shown = "remixformer/__init__.py" if u == "__init__" else u
            assert shown in section, f"docs/architecture.md's layer order does not name {shown}"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def test_the_checker_fails_on_a_planted_back_import(tmp_path):
    pkg = tmp_path / "fakepkg"
    _write(
        pkg,
        {
            "__init__.py": "",
            "keys.py": "X = 1\n",
            "models/__init__.py": "",
            "models/net.py": (
                "from fakepkg import keys\n"
                "from . import helpers\n"
                "def build():\n"
                "    from fakepkg.training.loop import fit  # back-import hidden in a function\n"
                "    import yaml\n"
                "    import timm\n"
                "    return fit\n"
            ),
            "models/helpers.py": "",
            "training/__init__.py": "",
            "training/loop.py": "from fakepkg.models.net import build\n\ndef fit():\n    return build\n",
            "cli/__init__.py": "",
            "cli/main.py": "def main():\n    from fakepkg.training.loop import fit\n    return fit\n",
        },
    )
    layers = [
        ("base", ("keys",)),
        ("models", ("models", "__init__")),
        ("apps", ("training",)),
        ("top", ("cli",)),
    ]
    problems = check(pkg, "fakepkg", layers, lazy_libraries={"timm": "heavy"}, lazy_exceptions={})
    assert len(problems) == 3, problems
    assert any(
        "models/net.py:4 imports fakepkg.training.loop" in p and "may not import" in p for p in problems
    )
    assert any("net.py:4: fakepkg.training.loop is imported inside a function" in p for p in problems)
    assert any("net.py:5: yaml is imported inside a function" in p for p in problems)

    # a module-level back-import and an unplaced unit are caught too
    _write(pkg, {"keys.py": "from fakepkg.models import net\n", "extra.py": ""})
    problems = check(pkg, "fakepkg", layers, lazy_libraries={"timm": "heavy"}, lazy_exceptions={})
    assert any("keys.py:1 imports fakepkg.models.net" in p for p in problems), problems
    assert any("fakepkg.extra has no layer" in p for p in problems), problems


def test_the_checker_fails_on_a_back_import_planted_in_a_copy_of_the_package(tmp_path):
    copy = tmp_path / "remixformer"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    target = copy / "models" / "config.py"
    target.write_text(
        target.read_text(encoding="utf-8")
        + "\n\ndef _planted():\n    from remixformer.evaluation.report import write_report\n\n"
        "    return write_report\n",
        encoding="utf-8",
    )
    problems = check(copy, "remixformer", LAYERS)
    assert any("models/config.py" in p and "may not import evaluation" in p for p in problems), problems
