"""The manifest's records (trace_ckpt/format/records.py): what a reader takes from a manifest's JSON and what it
refuses, field by field, and what it writes back. The manifest comes from a file someone else wrote: every wrong
type is a ValueError naming its place (the reader turns it into one CorruptCheckpointError line)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.forge import NONE, forge_checkpoint, prog
from tests.reseal import seal, split
from trace_ckpt.ckpt import read_manifest
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.format.manifest import Manifest, NodeSummary, Producer, SectionInfo, SignatureInfo
from trace_ckpt.format.records import MAX_DEPTH, dumps, loads, to_json


def _manifest() -> Manifest:
    return Manifest(
        format_version=3,
        created_at=datetime(2026, 11, 30, 4, 50, 41, 311267, tzinfo=timezone.utc),
        producer=Producer(trace_ckpt="0.1.0", python="3.11.7", rdagent="1.0.0"),
        trace_class="rdagent.core.proposal.Trace",
        nodes=[
            NodeSummary(
                index=0,
                loop_id=0,
                kind="factor",
                experiment_class="x.Exp",
                decision=True,
                factors=["Mom3"],
                metrics={"IC": 0.04, "1day.excess_return_with_cost.max_drawdown": -0.05},
                sub_workspaces=[None, "/ws/a"],
            ),
            NodeSummary(index=1, loop_id=1, parents=[0], kind="model", experiment_class="x.Exp", decision=False),
        ],
        sota_index=0,
        sections=[SectionInfo(name="graph", kind="graph", offset=16, length=10, raw_length=20, digest="ab")],
        signature=SignatureInfo(algorithm="ed25519", key_id="SHA256:abc+/="),
        metadata={"source": {"loop": 3, "path": "log/__session__/3"}, "tags": ["a", 1, None]},
    )


def _doc() -> dict[str, Any]:
    return json.loads(dumps(_manifest()))


def test_a_manifest_round_trips_through_its_json() -> None:
    m = _manifest()
    text = dumps(m)
    back = Manifest.from_json(loads(text))
    assert back == m
    assert back.created_at == m.created_at and back.created_at.tzinfo is not None
    assert json.loads(text)["created_at"] == "2026-11-30T04:50:41.311267Z"  # the form pydantic wrote before v3
    assert dumps(back) == text


def test_keys_a_newer_writer_added_are_kept_and_written_back() -> None:
    doc = _doc()
    doc["zoo"] = {"new": [1, 2]}
    doc["nodes"][1]["score"] = 0.5
    doc["producer"]["os"] = "linux"
    m = Manifest.from_json(copy.deepcopy(doc))
    assert m.extras == {"zoo": {"new": [1, 2]}} and m.nodes[1].extras == {"score": 0.5}
    assert json.loads(dumps(m)) == doc
    assert to_json(m)["producer"]["os"] == "linux"


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    for p in parents:
        doc = doc[p]
    doc[last] = value


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("format_version", "3", "Manifest.format_version: expected int, got a string"),
        ("format_version", True, "Manifest.format_version: expected int, got a boolean"),
        ("format_version", 3.0, "Manifest.format_version: expected int, got a number"),
        ("format", "other", "Manifest.format: expected one of 'trace-ckpt'"),
        ("hash_algorithm", "md5", "Manifest.hash_algorithm: expected one of"),
        ("created_at", "yesterday", "Manifest.created_at: 'yesterday' is not an ISO 8601"),
        ("created_at", 1764478241, "Manifest.created_at: expected datetime, got a number"),
        ("producer", "me", "Manifest.producer: expected an object, got a string"),
        ("producer.python", None, "Manifest.producer.python: expected str, got null"),
        ("sota_index", -1, "Manifest.sota_index: -1 is less than 0"),
        ("nodes", {"0": {}}, "Manifest.nodes: expected a list, got an object"),
        ("nodes.0.parents", [True], "Manifest.nodes[0].parents[0]: expected int, got a boolean"),
        ("nodes.0.kind", "fin_model", "Manifest.nodes[0].kind: expected one of"),
        ("nodes.0.decision", "yes", "Manifest.nodes[0].decision: expected bool, got a string"),
        ("nodes.0.metrics", {"IC": "0.04"}, "Manifest.nodes[0].metrics['IC']: expected a number, got a string"),
        ("nodes.0.metrics", {"IC": 10**400}, "Manifest.nodes[0].metrics['IC']: 1000"),
        ("nodes.0.factors", "Mom3", "Manifest.nodes[0].factors: expected a list, got a string"),
        ("nodes.0.sub_workspaces", [3], "Manifest.nodes[0].sub_workspaces[0]: expected str, got a number"),
        ("sections.0.offset", "16", "Manifest.sections[0].offset: expected int, got a string"),
        ("sections.0.codec", "gzip", "Manifest.sections[0].codec: expected one of 'zstd', 'none'"),
        ("signature.key_id", "a key", "Manifest.signature.key_id: 'a key' does not match"),
        ("signature.algorithm", "Ed25519", "Manifest.signature.algorithm: 'Ed25519' does not match"),
        ("metadata", [], "Manifest.metadata: expected an object, got a list"),
    ],
)
def test_a_wrong_field_is_refused_by_its_place(path: str, value: Any, where: str) -> None:
    doc = _doc()
    _set(doc, path, value)
    with pytest.raises(ValueError) as e:
        Manifest.from_json(doc)
    assert str(e.value).startswith(where), str(e.value)


@pytest.mark.parametrize("field", ["format_version", "created_at", "producer", "trace_class"])
def test_a_required_field_that_is_missing_is_refused(field: str) -> None:
    doc = _doc()
    del doc[field]
    with pytest.raises(ValueError, match=f"^Manifest.{field}: missing$"):
        Manifest.from_json(doc)


def test_non_finite_numbers_are_refused() -> None:
    text = dumps(_manifest()).replace(b'"IC":0.04', b'"IC":NaN')
    with pytest.raises(ValueError, match=r"metrics\['IC'\]: nan is not a finite number"):
        Manifest.from_json(loads(text))


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def test_free_form_values_nest_at_most_max_depth() -> None:
    doc = _doc()
    doc["metadata"] = {"deep": _nested(MAX_DEPTH - 3)}  # the document's top, metadata, the dict: MAX_DEPTH in all
    assert Manifest.from_json(doc).metadata["deep"] == _nested(MAX_DEPTH - 3)
    doc["metadata"] = {"deep": _nested(MAX_DEPTH - 2)}
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH}"):
        Manifest.from_json(doc)
    doc = _doc()
    doc["unknown"] = _nested(MAX_DEPTH)  # kept keys too
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH}"):
        Manifest.from_json(doc)


def test_json_too_deep_for_the_parser_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="nested deeper"):
        loads(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_nodes_must_be_the_trace() -> None:
    doc = _doc()
    doc["nodes"][1]["parents"] = [7]
    with pytest.raises(ValueError, match=r"nodes\[1\] names a parent that is not a node"):
        Manifest.from_json(doc)
    doc = _doc()
    doc["sota_index"] = 2
    with pytest.raises(ValueError, match="sota_index 2 is not a node"):
        Manifest.from_json(doc)


def test_metadata_json_cannot_hold_is_a_save_error(tmp_path: Path) -> None:
    """A caller's metadata that is not JSON data stops the writer with one SaveError line (the save's atomic write
    then leaves nothing at the target)."""
    from trace_ckpt.errors import SaveError
    from trace_ckpt.format.container import ContainerWriter

    with open(tmp_path / "x.tckpt", "wb") as f:
        w = ContainerWriter(f)
        w.add_bytes("graph", "graph", b"\x80\x05N.")
        with pytest.raises(SaveError, match=r"^the manifest would not read back \(.*metadata must be JSON data"):
            w.finish(_manifest().replace(metadata={"when": object()}))


def test_a_forged_manifest_is_one_corrupt_checkpoint_line(tmp_path: Path) -> None:
    """Through the reader: a wrong type in a manifest whose checksums are all right."""
    path = tmp_path / "f.tckpt"
    forge_checkpoint(path, prog(NONE))
    body, doc = split(path.read_bytes())
    doc["counts"]["accepted"] = "3"
    path.write_bytes(seal(body, doc))
    with pytest.raises(CorruptCheckpointError) as e:
        read_manifest(path)
    msg = str(e.value)
    assert "manifest is not valid (Manifest.counts.accepted: expected int, got a string)" in msg and "\n" not in msg
