"""The oracle never imports torch."""

import subprocess
import sys
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1] / "reference"


def test_reference_modules_import_without_torch():
    modules = [p.stem for p in REFERENCE.glob("*.py") if p.stem != "__init__"]
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module('reference.' + m)\n"
        "assert 'torch' not in sys.modules, 'reference imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REFERENCE.parent)


def test_reference_sources_do_not_mention_torch_imports():
    for path in REFERENCE.glob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "from torch" not in text, path.name


# -- one-way package arrows ----------------------------------------------------------------------

ROOT = REFERENCE.parent
PACKAGES = ("reference", "backends", "conformance", "reports")
# What each package may import from the project (itself aside). conformance uses the others;
# nothing points back. The adapter contract, backends/base.py, imports nothing of the project, and
# the call interpreter and the element judge (carried verbatim by repro scripts) nothing either.
ALLOWED = {"reference": set(), "backends": {"backends"}, "reports": {"backends"},
           "conformance": {"reference", "backends", "reports"}}
SELF_CONTAINED = ("backends/base.py",)
# Carried verbatim, together, by every repro script: each may import only the others (the script
# leaves those imports out and defines every name in one namespace).
INLINED = ("backends/torch_call.py", "backends/torch_run.py", "conformance/elementwise.py")


def _project_imports(path: Path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        found |= {n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES}
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            found.add(node.module)
    return found


def test_package_arrows_point_one_way():
    for package, allowed in ALLOWED.items():
        for path in (ROOT / package).rglob("*.py"):
            roots = {name.split(".")[0] for name in _project_imports(path)} - {package}
            assert roots <= allowed, f"{path.relative_to(ROOT)} imports {sorted(roots - allowed)}"


def test_contract_interpreter_and_judge_import_nothing_of_the_project():
    for rel in SELF_CONTAINED:
        assert not _project_imports(ROOT / rel), rel
    modules = {rel.removesuffix(".py").replace("/", ".") for rel in INLINED}
    for rel in INLINED:
        others = modules - {rel.removesuffix(".py").replace("/", ".")}
        allowed = others | {m.split(".")[0] for m in others}
        assert _project_imports(ROOT / rel) <= allowed, rel


def test_repro_sources_are_the_inlined_modules():
    from conformance.artifacts import repro_sources

    assert tuple(name for name, _ in repro_sources()) == INLINED


def test_the_reference_library_needs_numpy_alone():
    """``from reference import functional as RF`` works where nothing but NumPy can be imported:
    every other third-party and project package is blocked in a fresh interpreter."""
    code = (
        "import sys\n"
        "BLOCKED = ('torch', 'hypothesis', 'rich', 'jinja2', 'markupsafe', 'scipy', 'conformance', 'backends',"
        " 'reports', 'pytest')\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED: raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "from reference import functional as RF\n"
        "x, w = np.random.rand(2, 3, 8), np.random.rand(4, 3, 3)\n"
        "y = RF.conv1d(x, w, None, stride=2)\n"
        "grads = RF.vjp('conv1d', x, w, None, stride=2, cotangent=np.ones_like(y))\n"
        "assert sorted(grads) == ['input', 'weight'] and len(RF.names()) > 100\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)

