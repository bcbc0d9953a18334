"""Every `trace-ckpt` command line shown in README.md, docs/cli.md and docs/guide.md runs, offline, as shown.

The lines come from the fenced shell blocks of each page (```, ```bash, ```sh, ```shell, ```console).
They run with bash, in one work folder for the whole module, page after page in the order they appear,
against real artefacts: the log folder of the session's real offline RD-Agent factor run (tests/conftest.py
`factor_run`) stands in for `log/<run>`, `run1.tckpt` is a checkpoint of it, `alpha22/` is a base-features
folder. Commands that start RD-Agent (`resume`, `run`) get the offline environment of
examples/offline/run.py and are capped to one loop, and each distinct such line runs once. A line passes
when it exits 0, or N when the line ends in a comment `# exit N` (or EXPECTED_EXIT says so).

What a page may use in a shell block: `# comments`, `\\` continuations, pipes and redirections,
`NAME=value trace-ckpt ...`, and `export NAME=value` (set for the later lines of that block).

To extend: a new placeholder goes in SUBSTITUTE, a new input file in PREPARED (an object in a bucket in
PREPARED_S3), a line that cannot run offline in NOT_RUN_LINES (with the reason), a program other than
trace-ckpt in NOT_RUN_PROGRAMS, a wrapper such as `dotenv run --` in WRAPPERS.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import typer.main

from trace_ckpt.cli import app

if TYPE_CHECKING:
    from tests.s3server import S3Server

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/cli.md", "docs/guide.md"]
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
BIN = Path(sys.executable).parent

# doc placeholder (a whole token, or a path prefix of one) -> what the test puts there
SUBSTITUTE: dict[str, str] = {
    "log/<run>": "{factor_log}",  # README, docs/guide.md: RD-Agent's log folder of phase 1
    "log/2026-11-20_factor": "{factor_log}",  # docs/cli.md
    "log/2026-11-20_08-30-00-123456": "{factor_log}",  # docs/guide.md: RD-Agent's default log folder name
    "~/.trace-ckpt.key": "{work}/trace-ckpt.key",  # docs/guide.md: the signing key file
    "endpoint_url=http://minio.lab:9000": "endpoint_url={s3_endpoint}",  # docs/cli.md: the local S3 server
}
# objects the pages take as given in a bucket: URL -> file of the work folder uploaded there. When a page
# shows an s3:// URL, the S3 server of tests/s3server.py runs (bucket "research") and its endpoint and
# credentials are in every command's environment, as the AWS SDK reads them.
PREPARED_S3: dict[str, str] = {
    "s3://research/run1.tckpt": "run1.tckpt",
    "s3://research/runs/run1.tckpt": "run1.tckpt",
}
# prefixes a line may wrap trace-ckpt in, and why the test drops them
WRAPPERS: dict[tuple[str, ...], str] = {
    ("dotenv", "run", "--"): "loads RD-Agent's .env; the test's offline environment stands in for it",
}
# inputs the pages take as given, made in the work folder before the first command
PREPARED: dict[str, Callable[[Path, Path], None]] = {}
# programs shown in shell blocks that this test does not run, and why
NOT_RUN_PROGRAMS: dict[str, str] = {
    "rdagent": "phase 1 itself needs a real LLM endpoint; the factor_run fixture runs RD-Agent's own factor "
    "loop offline instead, and its log folder stands in for log/<run>",
    "make": "make demo / make test: tests/test_examples.py runs the demo, CI runs the tests",
    "pip": "installs packages",
    "scp": "copies to another machine",
    "aws": "copies to object storage",
    "rsync": "copies to another machine",
    "cd": "each line runs in the test's work folder",
    "mkdir": "folders are made by PREPARED",
    "cp": "files are made by PREPARED",
    "cat": "shows a file",
    "chmod": "the key file is made by PREPARED",
    "python": "examples/*.py are run by tests/test_examples.py",
    "bash": "examples/two_phase.sh needs a real LLM; tests/test_examples.py checks it with bash -n",
    "ssh": "runs on another machine",
}
# trace-ckpt lines that cannot run offline, and why
NOT_RUN_LINES: dict[str, str] = {
    "trace-ckpt run fin_quant --path log/2026-11-20_quant --autosave ckpts/": "continues a fin_quant session; the offline stand-ins have factor and model loops only",
}
# trace-ckpt lines whose documented outcome is not exit 0 but that do not say `# exit N`, and why
EXPECTED_EXIT: dict[str, tuple[int, str]] = {
    "trace-ckpt diff run1.tckpt run1-pruned.tckpt": (1, "docs/cli.md: diff exits 1 when the checkpoints differ"),
}
RDAGENT_COMMANDS = {"resume", "run"}  # they start an RD-Agent loop: offline environment, one loop


def _cli(work: Path, *args: str) -> None:
    env = {**os.environ, **_offline(work / "machine-prepare")}
    r = subprocess.run([str(BIN / "trace-ckpt"), *args], env=env, cwd=work, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def _prepare_run1(work: Path, factor_log: Path) -> None:
    _cli(work, "save", str(factor_log), "run1.tckpt")


def _prepare_run2(work: Path, factor_log: Path) -> None:
    """A second checkpoint to merge with run1.tckpt: the same real run, up to the end of loop 1."""
    _cli(work, "save", str(factor_log), "run2.tckpt", "--loop", "1")


def _prepare_pruned(work: Path, factor_log: Path) -> None:
    _cli(work, "prune", "run1.tckpt", "run1-pruned.tckpt", "--keep", "sota")


def _prepare_quant(work: Path, factor_log: Path) -> None:
    """A fin_quant-like trace (QuantTrace, hypotheses with an action) of factor and model nodes."""
    from rdagent.components.coder.model_coder.model import ModelTask
    from rdagent.core.proposal import HypothesisFeedback
    from rdagent.scenarios.qlib.experiment.model_experiment import QlibModelExperiment
    from rdagent.scenarios.qlib.proposal.quant_proposal import QlibQuantHypothesis

    from tests.builders import build_trace, data_folder, result_series
    from trace_ckpt import save_trace

    trace = build_trace([(), (0,), (1,)], [True, False, True], data_folder(work / "quant-data"), quant=True)
    task = ModelTask(
        "GRU_small", "a GRU", "GRU -> Linear", hyperparameters={}, training_hyperparameters={}, model_type="TimeSeries"
    )
    for i, decision in enumerate([True, False]):
        exp = QlibModelExperiment(
            [task], hypothesis=QlibQuantHypothesis(f"model {i}", "r", "c", "o", "j", "k", action="model")
        )
        exp.result = result_series(100 + i)
        trace.sync_dag_parent_and_hist(
            (
                exp,
                HypothesisFeedback(
                    reason="r", decision=decision, observations="o", hypothesis_evaluation="e", new_hypothesis="n"
                ),
            ),
            3 + i,
        )
    save_trace(trace, work / "quant.tckpt")


def _prepare_alpha22(work: Path, factor_log: Path) -> None:
    """alpha22/base_factors.json exactly as docs/guide.md shows it: RD-Agent's Alpha20 plus two expressions
    of RD-Agent's Alpha158 (so each one is a Qlib expression RD-Agent itself ships)."""
    from rdagent.utils.qlib import ALPHA20, ALPHA158

    text = (ROOT / "docs" / "guide.md").read_text()
    blocks = [b for b in re.findall(r"^```json\n(.*?)^```", text, flags=re.M | re.S) if '"RESI5"' in b]
    assert len(blocks) == 1, "docs/guide.md should show one Alpha22 base_factors.json"
    alpha22 = json.loads(blocks[0])
    assert len(alpha22) == 22 and all(alpha22[k] == v for k, v in ALPHA20.items())
    assert all(ALPHA158.get(k) == v for k, v in alpha22.items() if k not in ALPHA20)
    (work / "alpha22").mkdir()
    (work / "alpha22" / "base_factors.json").write_text(blocks[0])


def _prepare_key(work: Path, factor_log: Path) -> None:
    (work / "trace-ckpt.key").write_text("0123456789abcdef" * 4 + "\n")


PREPARED.update(
    {
        "run1.tckpt": _prepare_run1,  # README, docs/cli.md, docs/guide.md
        "run2.tckpt": _prepare_run2,  # docs/cli.md: merge
        "run1-pruned.tckpt": _prepare_pruned,  # docs/cli.md: diff
        "quant.tckpt": _prepare_quant,  # docs/cli.md: prune --action model
        "alpha22/": _prepare_alpha22,  # README, docs/guide.md
        "~/.trace-ckpt.key": _prepare_key,  # docs/guide.md
    }
)


@dataclass
class DocLine:
    page: str
    lineno: int
    text: str  # the command as written, comment removed, continuations joined
    tokens: list[str]
    env: dict[str, str] = field(default_factory=dict)  # from `export` lines and leading assignments
    expect: int = 0

    @property
    def where(self) -> str:
        return f"{self.page}:{self.lineno}: {self.text}"

    @property
    def program(self) -> str:
        return self.tokens[0] if self.tokens else ""


ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def doc_lines(page: str) -> list[DocLine]:
    """The shell command lines of the fenced shell blocks of ``page``, in order."""
    path = ROOT / page
    if not path.exists():
        return []
    found: list[DocLine] = []
    block: bool | None = None  # None: outside a block; True: in a shell block; False: in another block
    exported: dict[str, str] = {}
    pending, start = "", 0
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        fence = re.match(r"^\s*```\s*([A-Za-z]*)", raw)
        if fence:
            block, exported = (fence.group(1).lower() in SHELL_BLOCKS if block is None else None), {}
            continue
        if not block:
            continue
        line = raw.strip().removeprefix("$ ")
        if not pending:
            start = no
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        tokens = shlex.split(line, comments=True)
        if not tokens:
            continue
        if tokens[0] == "export":
            exported.update(t.partition("=")[::2] for t in tokens[1:])
            continue
        env = dict(exported)
        while tokens and ASSIGN.match(tokens[0]):
            name, _, value = tokens.pop(0).partition("=")
            env[name] = value
        for prefix in WRAPPERS:
            if tuple(tokens[: len(prefix)]) == prefix:
                tokens = tokens[len(prefix) :]
        expect = re.search(r"#.*\bexit (\d+)\b", line)
        found.append(DocLine(page, start, " ".join(tokens), tokens, env, int(expect.group(1)) if expect else 0))
    return found


def _offline(machine: Path) -> dict[str, str]:
    from examples.offline.run import offline_env

    env = offline_env(machine, "run")
    env["TRACE_CKPT_ALLOW_MODULES"] = '["examples", "tests"]'  # the offline run's own classes
    env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def _substitute(token: str, values: dict[str, str]) -> str:
    for key, repl in SUBSTITUTE.items():
        if token == key or token.startswith(key.rstrip("/") + "/"):
            return repl.format(**values) + token[len(key) :]
    return token


def _subcommand(tokens: list[str]) -> str | None:
    """The trace-ckpt command a line runs (after the group's own options), or None."""
    group = typer.main.get_command(app)
    takes_value = {o: not p.is_flag for p in group.params for o in p.opts}
    i = 1
    while i < len(tokens) and tokens[i].startswith("-"):
        if tokens[i] in ("--help", "-h"):
            return None
        i += 1 if "=" in tokens[i] or not takes_value.get(tokens[i], False) else 2
    return tokens[i] if i < len(tokens) else None


def _cap_loops(args: list[str]) -> list[str]:
    """One loop is enough to show a command works: --loop-n N -> 1, a time budget -> one loop."""
    out, i, has_cap = [], 0, False
    while i < len(args):
        a = args[i]
        if a in ("--loop-n", "--loop_n", "--step-n", "--step_n") and i + 1 < len(args):
            out += [a, "1" if a.startswith("--loop") else min(args[i + 1], "5", key=int)]
            has_cap, i = True, i + 2
        elif a in ("--all-duration", "--all_duration") and i + 1 < len(args):
            i += 2
        else:
            out.append(a)
            i += 1
    return out if has_cap else [*out, "--loop-n", "1"]


OPERATORS = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "<"}


def _shell(tokens: list[str]) -> str:
    return " ".join(t if t in OPERATORS else shlex.quote(t) for t in tokens)


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server | None]:
    """The local S3 server, when a page shows an s3:// URL."""
    if not any(t.startswith("s3://") for p in PAGES for d in doc_lines(p) for t in d.tokens):
        yield None
        return
    from tests.s3server import s3_server

    with s3_server("research") as server:
        yield server


@dataclass
class Work:
    """Where the pages' lines run, and what stands behind their placeholders."""

    path: Path  # the work folder: the cwd of every line
    factor_log: Path
    s3: S3Server | None

    @property
    def values(self) -> dict[str, str]:
        return {
            "factor_log": str(self.factor_log),
            "work": str(self.path),
            "s3_endpoint": self.s3.endpoint if self.s3 else "(no S3 server: no page shows an s3:// URL)",
        }


@pytest.fixture(scope="module")
def work(factor_run: Path, s3: S3Server | None, tmp_path_factory: pytest.TempPathFactory) -> Work:
    path = tmp_path_factory.mktemp("doc-commands")
    for make in PREPARED.values():
        make(path, factor_run)
    if s3 is not None:
        for url, name in PREPARED_S3.items():
            bucket, _, key = url.removeprefix("s3://").partition("/")
            s3.client.upload_file(str(path / name), bucket, key)
    return Work(path, factor_run, s3)


RAN: dict[tuple, tuple[int, str]] = {}  # RD-Agent commands (the slow ones) run once per distinct line
WRITERS = {"save", "prune", "merge", "export-factors", "keygen"}  # they refuse an existing output without --force


def _outputs(tokens: list[str], sub: str) -> list[str]:
    """The outputs a writing line makes, as the CLI parses it (none with --force): a page shows each line as a
    user runs it where that output does not exist yet, though the work folder may hold it from PREPARED."""
    ctx = (
        typer.main.get_command(app)
        .commands[sub]
        .make_context(sub, tokens[tokens.index(sub) + 1 :], resilient_parsing=True)
    )
    if ctx.params.get("force"):
        return []
    out = str(ctx.params["paths"][-1] if sub == "merge" else ctx.params["out_path"])
    return [out, f"{out}.pub"] if sub == "keygen" else [out]


def _remove(out: str, work: Work) -> None:
    if out.startswith("s3://") and work.s3 is not None:
        bucket, _, key = out.removeprefix("s3://").partition("/")
        work.s3.client.delete_object(Bucket=bucket, Key=key)
    elif "://" not in out:
        (work.path / out).unlink(missing_ok=True)


def run_line(line: DocLine, work: Work, machine_no: str) -> tuple[int, str]:
    """Run one page line in the work folder; its exit code and the tail of its output."""
    tokens = [_substitute(t, work.values) for t in line.tokens]
    cut = next((i for i, t in enumerate(tokens) if t in OPERATORS), len(tokens))
    sub = _subcommand(tokens[:cut])
    rdagent = sub in RDAGENT_COMMANDS
    if rdagent:
        tokens = [*_cap_loops(tokens[:cut]), *tokens[cut:]]
        key = (tuple(tokens), tuple(sorted(line.env.items())))
        if key in RAN:
            return RAN[key]
    if sub in WRITERS:
        for out in _outputs(tokens[:cut], sub):
            _remove(out, work)
    machine = work.path / (f"machine-{machine_no}" if rdagent else "machine-tools")
    machine.mkdir(exist_ok=True)
    if rdagent and not ("--only" in tokens and tokens[tokens.index("--only") + 1] == "model"):
        from examples.offline.run import prepare_data

        prepare_data(machine)  # factor loops run factor code on the data folder; a model phase needs none
    env = {**os.environ, **_offline(machine), **(work.s3.env if work.s3 else {})}
    for name, value in line.env.items():
        value = _substitute(value, work.values)
        # a doc's PYTHONPATH adds to the test's (which makes the offline stand-ins importable)
        env[name] = f"{value}{os.pathsep}{env[name]}" if name == "PYTHONPATH" else value
    r = subprocess.run(
        ["bash", "-o", "pipefail", "-c", _shell(tokens)],
        cwd=work.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = (r.returncode, (r.stdout[-1500:] + "\n" + r.stderr[-2500:]).strip())
    if rdagent:
        RAN[key] = result
    return result


def test_the_pages_show_the_main_commands() -> None:
    subs = {_subcommand(d.tokens) for p in PAGES for d in doc_lines(p) if d.program == "trace-ckpt"}
    assert {"save", "inspect", "verify", "resume"} <= subs, subs
    assert (ROOT / "docs" / "guide.md").exists()


def test_only_lines_that_cannot_run_offline_are_filtered() -> None:
    """Lines that are not run: programs of NOT_RUN_PROGRAMS and the trace-ckpt lines of NOT_RUN_LINES, no other."""
    commands = set(typer.main.get_command(app).commands)
    shown = set()
    for page in PAGES:
        for d in doc_lines(page):
            if d.program == "trace-ckpt":
                shown.add(d.text)
                sub = _subcommand(d.tokens)
                assert sub is None or sub in commands, f"{d.where}: the CLI has no command {sub!r}"
            else:
                assert d.program in NOT_RUN_PROGRAMS, (
                    f"{d.where}: {d.program!r} is neither trace-ckpt nor listed in NOT_RUN_PROGRAMS"
                )
    stale = (set(NOT_RUN_LINES) | set(EXPECTED_EXIT)) - shown
    assert not stale, f"NOT_RUN_LINES / EXPECTED_EXIT entries no page shows any more: {stale}"


@pytest.mark.parametrize("page", PAGES)
def test_every_command_of_the_page_runs(page: str, work: Work) -> None:
    lines = [d for d in doc_lines(page) if d.program == "trace-ckpt" and d.text not in NOT_RUN_LINES]
    assert lines, f"{page} shows no trace-ckpt command"
    commands = set(typer.main.get_command(app).commands)
    failures = []
    for no, d in enumerate(lines):
        sub = _subcommand(d.tokens)
        if sub is not None and sub not in commands:
            failures.append(f"{d.where}\n  the CLI has no command {sub!r} (yet?)")
            continue
        code, output = run_line(d, work, machine_no=f"{Path(page).stem}-{no}")
        expect = EXPECTED_EXIT.get(d.text, (d.expect,))[0]
        if code != expect:
            failures.append(f"{d.where}\n  exit {code}, the page expects {expect}\n  " + output.replace("\n", "\n  "))
    assert not failures, "\n\n".join(failures)


PICTURES = {".png": b"\x89PNG\r\n\x1a\n", ".svg": b"<?xml", ".pdf": b"%PDF"}


def test_the_plot_line_wrote_a_png(work: Work) -> None:
    """The --plot lines of the pages made real pictures in the work folder, in the format of the extension."""
    shown = [d for p in PAGES for d in doc_lines(p) if d.program == "trace-ckpt" and "--plot" in d.tokens]
    assert shown
    for d in shown:
        out = work.path / d.tokens[d.tokens.index("--plot") + 1]
        if not out.exists():  # this test was run alone
            code, output = run_line(d, work, "plot")
            assert code == 0, output
        magic = PICTURES[out.suffix]
        assert out.read_bytes()[: len(magic)] == magic
