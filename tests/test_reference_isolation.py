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
