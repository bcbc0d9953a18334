"""The end of `make demo`: the exact commands that work on its outputs, each one run here first.

The demo's checkpoints hold classes of this repository's `examples` package (the offline coders and
scenarios), and its RD-Agent session dumps are signed with the demo's RD-Agent key. `demo.env` (written next
to the outputs) says so once: the `trace-ckpt` of this checkout on PATH, `examples` importable and allowed
(TRACE_CKPT_ALLOW_MODULES), and that key. Every command printed is run through `. demo.env` in an
environment holding none of the demo's own settings, so a printed line that does not work fails the demo.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what a shell a user opens has; the demo's own settings are not passed on
_USER_ENV = ("HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "PATH")


def _shown(path: Path) -> str:
    """``path`` as the user types it from the folder `make demo` ran in."""
    rel = os.path.relpath(path)
    return shlex.quote(rel if not rel.startswith("..") else str(path))


def write_env(out: Path, signing_key: str) -> Path:
    """``out/demo.env``: what the demo's outputs need, as shell exports."""
    exports = {
        "PATH": f"{Path(sys.executable).parent}:$PATH",
        "PYTHONPATH": f"{REPO}${{PYTHONPATH:+:$PYTHONPATH}}",
        "TRACE_CKPT_ALLOW_MODULES": '["examples"]',
        "ARTIFACT_SIGNING_KEY": signing_key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    env_file = out / "demo.env"
    lines = ["# . this file, then the commands make demo printed work on its outputs"]
    for name, value in exports.items():
        quoted = f'"{value}"' if "$" in value else shlex.quote(value)
        lines.append(f"export {name}={quoted}")
    env_file.write_text("\n".join(lines) + "\n")
    return env_file


def commands(out: Path, log_dir: Path) -> list[tuple[str, int]]:
    """The command lines to print, each with the exit code it ends with."""
    run1, run2 = _shown(out / "run1.tckpt"), _shown(out / "run2.tckpt")
    return [
        (f"trace-ckpt inspect {run2}", 0),
        (f"trace-ckpt ls {_shown(out)}", 0),
        (f"trace-ckpt verify {run1}", 0),
        (f"trace-ckpt diff {run1} {run2}", 1),
        (f"trace-ckpt export-factors {run1} {_shown(out / 'sota-factors.csv')}", 0),
        (f"trace-ckpt prune {run1} {_shown(out / 'sota.tckpt')} --keep sota", 0),
        (f"trace-ckpt save {_shown(log_dir)} {_shown(out / 'saved-again.tckpt')} --json", 0),
    ]


def print_commands(out: Path, log_dir: Path, signing_key: str) -> None:
    """Run every command as a user would after `. demo.env`, then print them; the files they write are removed
    again, so the printed lines work as they stand."""
    env_file = write_env(out, signing_key)
    env = {k: os.environ[k] for k in _USER_ENV if k in os.environ}
    made = [out / "sota-factors.csv", out / "sota.tckpt", out / "saved-again.tckpt"]
    lines = commands(out, log_dir)
    for line, code in lines:
        r = subprocess.run(
            ["bash", "-c", f". {shlex.quote(str(env_file))} && {line}"], env=env, capture_output=True, text=True
        )
        if r.returncode != code:
            sys.exit(f"demo: `{line}` (after . {env_file}) exited {r.returncode}, not {code}:\n{r.stderr[-2000:]}")
        if line.endswith("--json"):
            json.loads(r.stdout)
    for f in made:
        f.unlink(missing_ok=True)
    print(f"\nTry it yourself (from {Path.cwd()}):")
    print(f"  . {_shown(env_file)}    # this checkout's trace-ckpt, the examples classes, the demo's RD-Agent key")
    for line, code in lines:
        print(f"  {line}" + ("    # exit 1: they differ" if code == 1 else ""))
