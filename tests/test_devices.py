"""CI has no GPU, so device mix-ups are caught statically: every tensor factory in the package names
its device, or says on its line (``# host: why``) that the tensor is meant for the CPU.

Without this, ``torch.ones(...)`` in receptive_fields built its probe on the CPU while the module sat
on the GPU, and every ingest on CUDA crashed after the scan.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FACTORIES = {"zeros", "ones", "full", "empty", "arange", "tensor", "rand", "randn", "randint", "linspace", "eye",
             "as_tensor", "from_numpy", "randperm", "logspace"}


def unplaced_factories(source: str) -> list[int]:
    """Lines calling ``torch.<factory>(...)`` without ``device=`` and without a ``# host`` note."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FACTORIES
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and not any(k.arg == "device" for k in node.keywords)):
            span = lines[node.lineno - 1:(node.end_lineno or node.lineno)]
            if not any("# host" in line for line in span):
                found.append(node.lineno)
    return found


def test_the_check_catches_the_receptive_field_bug():
    old = "def probe(size):\n    x = torch.ones(1, 3, size, size, requires_grad=True)\n"
    assert unplaced_factories(old) == [2]
    assert unplaced_factories(old.replace("True)", "True, device=device)")) == []
    assert unplaced_factories(old.replace("True)", "True)  # host: a CPU probe")) == []


@pytest.mark.parametrize("path", sorted((ROOT / "ingest").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_tensor_factory_names_its_device(path):
    bad = unplaced_factories(path.read_text())
    assert not bad, (f"{path.relative_to(ROOT)} lines {bad}: pass device= (the module's or the batch's), "
                     "or mark a deliberate CPU tensor with '# host: <why>'")
