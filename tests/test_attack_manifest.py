"""Hostile manifests against the hand-written checker (trace_ckpt/format/records.py, adce1b7): JSON whose checksums
all hold (the footer's SHA-256 is recomputed) and that the commands reading only the manifest must either show
or refuse with one CorruptCheckpointError line (exit 4), never an "unexpected" error or a long run."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.clirun import run_cli
from tests.forge import NONE, forge_checkpoint, prog
from tests.reseal import seal, split
from trace_ckpt.ckpt import read_manifest
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.format.manifest import Manifest
from trace_ckpt.format.records import dumps, loads
from trace_ckpt.quant import sota_by_subtrace

# the commands that read nothing but the manifest, as ``run_cli`` arguments after the file
MANIFEST_COMMANDS = (("inspect",), ("inspect", "--json"), ("ls",))


def _forged(
    tmp_path: Path, edit: Callable[[dict[str, Any]], object], text: Callable[[str], bytes] | None = None
) -> Path:
    """A checkpoint whose manifest went through ``edit`` (and, as JSON text, through ``text``), resealed."""
    path = tmp_path / "forged.tckpt"
    forge_checkpoint(path, prog(NONE))
    body, doc = split(path.read_bytes())
    doc["nodes"] = [{"index": 0, "experiment_class": "x.Exp", "decision": True, "metrics": {"IC": 0.1}}]
    edit(doc)
    raw = json.dumps(doc)  # ASCII: a lone surrogate is written as its \\ud800 escape, as an attacker can
    path.write_bytes(seal(body, text(raw) if text else raw.encode()))
    return path


def _refused_everywhere(capsys: pytest.CaptureFixture[str], path: Path, what: str) -> None:
    """read_manifest and every manifest-only command refuse ``path`` with one line naming ``what``."""
    with pytest.raises(CorruptCheckpointError, match=re.escape(what)):
        read_manifest(path)
    for command in MANIFEST_COMMANDS:
        code, _, err = run_cli(capsys, *command, path)
        assert code == CorruptCheckpointError.exit_code and what in err and err.count("\n") == 1, (command, err)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(trace_class="\ud800"),
        lambda d: d["nodes"][0].update(hypothesis="a \udfff b"),
        lambda d: d.update(metadata={"\udc00": 1}),
    ],
    ids=["trace_class", "hypothesis", "metadata key"],
)
def test_a_lone_surrogate_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path, edit: Callable) -> None:
    """JSON may escape half of a UTF-16 pair (\\ud800): json.loads makes a str no UTF-8 stream can print, so
    inspect died with "unexpected UnicodeEncodeError" (exit 1). pydantic's parser refused it; so does loads."""
    _refused_everywhere(capsys, _forged(tmp_path, edit), "surrogate")


def test_loads_reads_a_surrogate_pair_and_refuses_a_half() -> None:
    """An escaped pair is one character (U+1F600) and an escaped backslash before "ud800" is text: both are read.
    Half a pair is no text."""
    assert loads(b'{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}') == {"a": "\U0001f600", "b": "\\ud800"}
    with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
        loads(b'{"a": "\\ud83d"}')


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_a_manifest_in_another_encoding_than_utf8_is_refused(tmp_path: Path, encoding: str) -> None:
    """The manifest is UTF-8 JSON (docs/format.md); json.loads guessed UTF-16/32 and skipped a BOM from the bytes,
    where pydantic's parser refused them: one file, one reading in every reader."""
    path = _forged(tmp_path, lambda d: None, lambda raw: raw.encode(encoding))
    with pytest.raises(CorruptCheckpointError, match="UTF-8"):
        read_manifest(path)


@pytest.mark.parametrize("created_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_is_no_utc_time_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, created_at: str
) -> None:
    """A ``created_at`` whose UTC time is before year 1 or after 9999 parsed (with pydantic too), then
    ``inspect --json`` and ``ls`` died converting it to UTC ("unexpected OverflowError", exit 1)."""
    path = _forged(tmp_path, lambda d: d.update(created_at=created_at))
    _refused_everywhere(capsys, path, "Manifest.created_at")


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["sizes"].update(raw=10**400),
        lambda d: d["workspace_stats"].update(file_bytes=-(10**30)),
        lambda d: d["counts"].update(hist=2**63),
    ],
    ids=["sizes.raw", "workspace_stats.file_bytes", "counts.hist"],
)
def test_an_integer_beyond_64_bits_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, edit: Callable
) -> None:
    """Sizes of 10**400 bytes parsed (with pydantic too), then ``inspect`` died dividing them into a float
    ("unexpected OverflowError", exit 1). No file, offset, count or index needs more than 64 bits."""
    _refused_everywhere(capsys, _forged(tmp_path, edit), "64 bits")


def test_the_largest_64_bit_integers_are_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The bound is exact: 2**63 - 1 and -2**63 are read and shown, 2**63 is not."""
    path = _forged(tmp_path, lambda d: (d["sizes"].update(raw=2**63 - 1), d["counts"].update(roots=-(2**63))))
    m = read_manifest(path)
    assert m.sizes.raw == 2**63 - 1 and m.counts.roots == -(2**63)
    code, out, _ = run_cli(capsys, "inspect", path)
    assert code == 0 and "GB raw" in out
    with pytest.raises(CorruptCheckpointError, match="64 bits"):
        read_manifest(_forged(tmp_path, lambda d: d["sizes"].update(raw=2**63)))


def test_a_key_named_extras_is_kept_like_any_unknown_key() -> None:
    """Unknown keys are kept and written back (docs/format.md); one spelled ``extras`` was dropped silently."""
    doc = {
        "format_version": 3,
        "created_at": "2026-11-30T00:00:00Z",
        "producer": {"trace_ckpt": "0", "python": "3", "extras": [1]},
        "trace_class": "x",
        "extras": {"from": "a newer writer"},
    }
    m = Manifest.from_json(json.loads(json.dumps(doc)))
    assert m.extras == {"extras": {"from": "a newer writer"}} and m.producer.extras == {"extras": [1]}
    written = json.loads(dumps(m))
    assert written["extras"] == doc["extras"] and written["producer"]["extras"] == [1]


class _CountingParents(list):
    """A node -> parents list that counts how often a node's parents are looked up."""

    lookups = 0

    def __getitem__(self, i: Any) -> Any:
        type(self).lookups += 1
        return super().__getitem__(i)


def test_the_sota_of_each_sub_trace_costs_one_walk_of_the_trace() -> None:
    """``inspect`` and ``ls`` find each sub-trace's SOTA from the manifest's parents. Each accepted node walked up to
    its root: a chain of 20,000 accepted nodes (1.5 MB of JSON, far under the manifest bounds) took 20 s, 400,000
    about 2 hours. Each node's root is now found once."""
    n = 3000
    parents = _CountingParents([[i - 1] if i else [] for i in range(n)])
    _CountingParents.lookups = 0
    assert sota_by_subtrace(parents, [True] * n) == {0: n - 1}
    assert _CountingParents.lookups < 10 * n, _CountingParents.lookups
    cycle = [[1], [2], [0], [], [3]]  # forged: a cycle of first parents ends, whatever node it starts from
    assert set(sota_by_subtrace(cycle, [True] * 5).values()) <= {2, 4}


def test_a_parent_named_again_is_read_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Node 1 naming node 0 20,000 times (a 900-byte file) kept ``inspect --plot`` drawing for 38 s, one line per
    edge. A save does not check for repeats, so they are dropped on read, not refused."""

    def edit(d: dict[str, Any]) -> None:
        d["nodes"] += [
            {"index": 1, "experiment_class": "x.Exp", "parents": [0] * 2000 + [1, 0], "metrics": {"IC": 0.2}}
        ]

    path = _forged(tmp_path, edit)
    assert read_manifest(path).nodes[1].parents == [0, 1]
    code, out, _ = run_cli(capsys, "inspect", "--json", path)
    assert code == 0 and json.loads(out)["nodes"][1]["parents"] == [0, 1]


@pytest.mark.parametrize("plan", [{"features": 5}, {"features": {}, "feature_codes": [1]}, [1], "plan"])
def test_a_plan_that_is_not_two_objects_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, plan: object
) -> None:
    """``metadata`` is free-form but for ``plan``, whose base features ``inspect`` counts and ``resume`` copies:
    ``"features": 5`` made ``inspect`` exit 1 "unexpected TypeError: object of type 'int' has no len()"."""
    path = _forged(tmp_path, lambda d: d.update(metadata={"plan": plan}))
    _refused_everywhere(capsys, path, "Manifest.metadata.plan")


def test_a_plan_as_a_loop_writes_it_is_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A plan as rdagent/sessions.py writes it (keys added by a newer one too) is read and counted; a wrong field
    is refused by its name."""
    plan = {"features": {"$close": "close"}, "feature_codes": {"f.py": "x = 1"}, "newer": True}
    path = _forged(tmp_path, lambda d: d.update(metadata={"plan": plan, "other": 5}))
    assert read_manifest(path).metadata == {"plan": plan, "other": 5}
    code, out, _ = run_cli(capsys, "inspect", path)
    assert code == 0 and "base features: 1, feature code files: 1" in out
    plan["feature_codes"] = "x = 1"  # the one field that is wrong
    with pytest.raises(CorruptCheckpointError, match=r"Manifest\.metadata\.plan\.feature_codes"):
        read_manifest(_forged(tmp_path, lambda d: d.update(metadata={"plan": plan})))


def test_a_wrong_hash_algorithm_is_named_in_a_short_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The error quoted the whole value: a 1 MB ``hash_algorithm`` made a 1 MB error line (in ``ls``, a 1 MB row)."""
    path = _forged(tmp_path, lambda d: d.update(hash_algorithm="x" * 1_000_000))
    code, _, err = run_cli(capsys, "inspect", path)
    assert code == CorruptCheckpointError.exit_code and "uses blake3 digests, not 'xxx" in err and len(err) < 500


@pytest.mark.parametrize("number", ["NaN", "-Infinity", "1e999"])
def test_a_free_form_number_that_is_not_finite_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, number: str
) -> None:
    """Typed numbers were finite, free-form ones (metadata, unknown keys) not: ``inspect --json`` printed ``NaN``,
    which is no JSON (jq refuses it), and a prune or merge of the file stopped at writing it back."""
    for where in ("metadata", "newer_key"):
        path = _forged(
            tmp_path,
            lambda d, where=where: d.update({where: {"x": [1, 2]}}),
            lambda raw: raw.replace("[1, 2]", number).encode(),
        )
        _refused_everywhere(capsys, path, "is not a finite number")


def test_a_free_form_integer_beyond_64_bits_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Every integer of a manifest fits in 64 bits (docs/format.md), free-form ones too: other readers' JSON
    parsers (Go, Rust, JavaScript) do not hold more."""
    path = _forged(tmp_path, lambda d: d.update(metadata={"source": {"loop": 2**64}}))
    _refused_everywhere(capsys, path, "does not fit in 64 bits")


def test_a_save_never_writes_an_integer_no_reader_takes(tmp_path: Path) -> None:
    """The writer keeps the reader's rule: ``max_file_bytes=2**64`` (a setting) wrote a file every read refused."""
    from trace_ckpt.errors import SaveError
    from trace_ckpt.format.container import ContainerWriter
    from trace_ckpt.format.manifest import Producer, WorkspaceStats

    manifest = Manifest(
        format_version=3,
        created_at=datetime.now(timezone.utc),
        producer=Producer(trace_ckpt="0", python="3"),
        trace_class="x",
    )
    with open(tmp_path / "x.tckpt", "wb") as f:
        w = ContainerWriter(f)
        w.add_bytes("graph", "graph", b"\x80\x05N.")
        with pytest.raises(SaveError, match="64 bits"):
            w.finish(manifest, content={"workspace_stats": WorkspaceStats(max_file_bytes=2**64)})


@pytest.mark.parametrize(
    ("metadata", "what"),
    [({"plan": 5}, "Manifest.metadata.plan"), ({"n": 2**64}, "64 bits")],
)
def test_a_save_never_writes_metadata_no_reader_takes(tmp_path: Path, metadata: dict, what: str) -> None:
    """A caller's ``metadata`` (save_trace(metadata=...)) a read would refuse stops the save with one line: a
    ``plan`` that is no object wrote a file every command refused."""
    from trace_ckpt.errors import SaveError
    from trace_ckpt.format.container import ContainerWriter
    from trace_ckpt.format.manifest import Producer

    manifest = Manifest(
        format_version=3,
        created_at=datetime.now(timezone.utc),
        producer=Producer(trace_ckpt="0", python="3"),
        trace_class="x",
        metadata=metadata,
    )
    with open(tmp_path / "x.tckpt", "wb") as f:
        w = ContainerWriter(f)
        w.add_bytes("graph", "graph", b"\x80\x05N.")
        with pytest.raises(SaveError, match=re.escape(what)):
            w.finish(manifest)


def test_inspect_shows_the_save_time_in_utc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``inspect`` printed ``created_at`` as written and called it UTC: 10:00 at +05:00 showed as "10:00:00 UTC"."""
    path = _forged(tmp_path, lambda d: d.update(created_at="2026-11-30T10:00:00+05:00"))
    code, out, _ = run_cli(capsys, "inspect", path)
    assert code == 0 and "saved 2026-11-30 05:00:00 UTC" in out


@pytest.mark.parametrize(("n", "drawn"), [(100, 4950), (400, 0)])
def test_a_dag_of_every_edge_is_plotted_in_bounded_work(tmp_path: Path, n: int, drawn: int) -> None:
    """Node i naming every earlier node: 100 nodes (4,950 edges, a 2.4 KB file) kept ``inspect --plot`` drawing
    for 10 s, one artist per edge; 1,200 (720,000 edges, 30 KB) would have taken 25 minutes. Beyond 2,000 edges
    they are one collection of straight lines; beyond 50,000 the panel says how many there are instead."""
    pytest.importorskip("matplotlib")
    from trace_ckpt.plot import plot_manifest

    def edit(d: dict[str, Any]) -> None:
        d["nodes"] = [
            {"index": i, "experiment_class": "x", "parents": list(range(i)), "metrics": {"IC": i / n}} for i in range(n)
        ]

    ax = plot_manifest(read_manifest(_forged(tmp_path, edit))).axes[0]
    assert not [a for a in ax.lines + ax.patches + ax.artists if a.get_gid() in ("edge", "branch")]
    collections = [c for c in ax.collections if c.get_gid() == "edges"]
    assert sum(len(c.get_segments()) for c in collections) == drawn
    assert (f"{n * (n - 1) // 2} DAG edges: too many to draw" in [t.get_text() for t in ax.texts]) == (not drawn)
