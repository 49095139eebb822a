"""infra/package.py's post-processing of Chalice's zip (the packaging itself is in tests/deploy)."""
from __future__ import annotations

import zipfile

import pytest

from infra import package


def _zip(path, names):
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            z.writestr(name, f"# {name}\n")
    return path


def test_strip_bytecode_drops_pycache_and_keeps_everything_else(tmp_path):
    names = ["app.py", "crm/__init__.py", "crm/__pycache__/__init__.cpython-311.pyc",
             "api/routes/__pycache__/meta.cpython-311.pyc", "six.pyc", "pydantic_core/x.so"]
    path = _zip(tmp_path / "deployment.zip", names)
    assert package._strip_bytecode(path) == 3
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["app.py", "crm/__init__.py", "pydantic_core/x.so"]
        assert z.read("crm/__init__.py") == b"# crm/__init__.py\n"
    assert package._strip_bytecode(path) == 0


def test_check_zip_requires_our_packages_and_rejects_botocore(tmp_path):
    ours = ["app.py", "chalice/app.py"] + [f"{p}/__init__.py" for p in package.VENDORED]
    package.check_zip(_zip(tmp_path / "ok.zip", ours))
    with pytest.raises(package.PackageError, match="crm"):
        package.check_zip(_zip(tmp_path / "no-crm.zip", [n for n in ours if n[:3] != "crm"]))
    with pytest.raises(package.PackageError, match="botocore"):
        package.check_zip(_zip(tmp_path / "boto.zip", ours + ["botocore/__init__.py"]))
