"""Check that every `>=` floor in pyproject.toml is real: the environment `make test-floors` built with uv's
lowest-direct resolution must hold exactly each floor. A dependency that resolved higher has a floor nothing
can install (another requirement lifts it), so the floor is a claim nobody tested: raise it.

Usage: python .ci/floors.py PYTHON EXTRAS (the floors environment's interpreter; extras comma-separated)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
INSTALLED = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"


def floors(extras: list[str]) -> dict[str, Version]:
    """Each direct requirement's `>=` floor, from [project] dependencies and the named extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *(r for e in extras for r in project["optional-dependencies"][e])]
    out: dict[str, Version] = {}
    for text in reqs:
        req = Requirement(text)
        for spec in req.specifier:
            if spec.operator == ">=":
                out[canonicalize_name(req.name)] = Version(spec.version)
    return out


def main(python: str, extras: list[str]) -> int:
    proc = subprocess.run([python, "-c", INSTALLED], capture_output=True, text=True, check=True)
    installed = {canonicalize_name(k): Version(v) for k, v in json.loads(proc.stdout).items()}
    bad = 0
    for name, floor in sorted(floors(extras).items()):
        got = installed.get(name)
        ok = got == floor  # PEP 440: 1.0 == 1.0.0
        bad += not ok
        print(f"{'ok    ' if ok else 'LIFTED'} {name:<20} floor {floor!s:<12} installed {got}")
    if bad:
        print(f"{bad} floor(s) not installable as declared: raise them in pyproject.toml to what was installed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], [e for e in sys.argv[2].split(",") if e] if len(sys.argv) > 2 else []))
