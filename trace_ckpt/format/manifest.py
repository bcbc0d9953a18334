"""The manifest: the JSON document that says what a checkpoint holds.

It is readable without unpickling anything and without importing rdagent (``trace-ckpt inspect``
reads only this). ``docs/format.md`` is the contract; these records are its typed form, checked on read by
:mod:`trace_ckpt.format.records` (plain dataclasses: ``inspect`` does not pay for importing pydantic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from trace_ckpt.format.records import Ge, Pattern, Record

SectionKind = Literal["graph", "blobs", "index", "files"]
BLOB_INDEX = "index"
"""The blob index's section name and kind: where each content-addressed blob lies (the string every version wrote)."""


@dataclass(kw_only=True)
class SectionInfo(Record):
    """One byte range of the file: a zstd frame (or raw bytes) with its checksum."""

    name: str
    kind: SectionKind
    codec: Literal["zstd", "none"] = "zstd"
    offset: int  # absolute byte offset of the stored bytes in the file
    length: int  # stored (compressed) length in bytes
    raw_length: int  # length after decompression
    digest: str  # hex digest of the stored bytes, with the manifest's hash_algorithm
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Producer(Record):
    """Versions of what wrote the file; a restore on another machine can compare them."""

    trace_ckpt: str
    rdagent: str | None = None
    python: str
    pandas: str | None = None
    pyarrow: str | None = None
    zstandard: str | None = None
    platform: str | None = None


@dataclass(kw_only=True)
class NodeSummary(Record):
    """One node of ``trace.hist``, summarised for people and tools that cannot unpickle."""

    index: int
    loop_id: int | None = None
    parents: list[int] = field(default_factory=list)
    kind: Literal["factor", "model", "other"] = "other"
    action: str | None = None
    experiment_class: str
    hypothesis: str | None = None
    decision: bool | None = None
    factors: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    experiment_workspace: str | None = None  # key of the experiment's folder in `files`
    sub_workspaces: list[str | None] = field(default_factory=list)  # keys of the sub-task folders


@dataclass(kw_only=True)
class TraceCounts(Record):
    """Counts over ``trace.hist``."""

    hist: int = 0
    accepted: int = 0
    rejected: int = 0
    factor_experiments: int = 0
    model_experiments: int = 0
    roots: int = 0


@dataclass(kw_only=True)
class WorkspaceStats(Record):
    """What was captured from the workspace folders on disk."""

    workspaces: int = 0
    missing: int = 0
    files: int = 0
    unique_files: int = 0
    symlinks: int = 0
    skipped: int = 0
    file_bytes: int = 0
    max_file_bytes: int | None = None


@dataclass(kw_only=True)
class Sizes(Record):
    """Byte counts of the whole checkpoint."""

    raw: int = 0
    stored: int = 0


@dataclass(kw_only=True)
class SignatureInfo(Record):
    """Present when the file is signed, over the manifest bytes: an HMAC (in the footer) or an Ed25519 signature
    (the 64 bytes before the manifest). An algorithm this reader does not know still parses: the check says so."""

    algorithm: Annotated[str, Pattern(r"[a-z0-9][a-z0-9-]{0,39}")] = "hmac-sha256"  # hmac-sha256 or ed25519
    key_id: Annotated[str, Pattern(r"[A-Za-z0-9:+/=_.-]{0,128}")] = ""
    """hmac-sha256: first 16 hex of SHA-256('trace-ckpt key id' + key), which key, not the key; ed25519: the public
    key's OpenSSH fingerprint, SHA256:<base64>."""


@dataclass(kw_only=True)
class LoopPlan(Record):
    """``metadata.plan`` (rdagent/sessions.py writes it, or null): the loop's base features and feature code files,
    which ``inspect`` counts and ``resume`` restores; the rest of ``metadata`` is free-form."""

    features: dict[str, Any] = field(default_factory=dict)
    feature_codes: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Manifest(Record):
    """Top-level manifest of a checkpoint file (format v2; a v1 manifest is migrated on read)."""

    format: Literal["trace-ckpt"] = "trace-ckpt"
    format_version: int
    hash_algorithm: Literal["blake3", "sha256"] = "blake3"  # of sections and blob contents: blake3 (v2+), sha256 (v1)
    created_at: datetime
    producer: Producer
    trace_class: str
    scenario_class: str | None = None
    counts: TraceCounts = field(default_factory=TraceCounts)
    sota_index: Annotated[int | None, Ge(0)] = None  # index of the last accepted node
    nodes: list[NodeSummary] = field(default_factory=list)
    workspace_stats: WorkspaceStats = field(default_factory=WorkspaceStats)
    sizes: Sizes = field(default_factory=Sizes)
    pickler: Literal["pickle", "dill"] = "pickle"
    tables: int = 0  # pandas objects stored as Arrow
    pandas_pickled: int = 0  # pandas objects kept in the pickle (not Arrow)
    blobs: int = 0  # distinct content-addressed blobs
    sections: list[SectionInfo] = field(default_factory=list)
    signature: SignatureInfo | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # free-form, producer-defined

    @classmethod
    def from_json(cls, doc: Any) -> Manifest:
        """A parsed manifest, every field checked, and its nodes checked to be the trace's (ValueError if not)."""
        manifest = super().from_json(doc)
        manifest._nodes_are_the_trace()
        if manifest.metadata.get("plan") is not None:  # its readers count and copy two objects (a number: TypeError)
            LoopPlan.from_json(manifest.metadata["plan"], "Manifest.metadata.plan", 3)
        return manifest

    def _nodes_are_the_trace(self) -> None:
        """Node ``i`` is ``trace.hist[i]`` and names as parents only nodes of the trace: every reader (``ls``,
        ``diff``, the plot) places nodes by these numbers (a node index of 10**30 hung the plot). A parent named
        again is read once: node 1 naming node 0 20,000 times kept the plot drawing for 38 s (a later parent, a
        cycle, is left to the graph's check, rdagent/shape.py: the views guard against cycles)."""
        n = len(self.nodes)
        for i, node in enumerate(self.nodes):
            if node.index != i:
                raise ValueError(f"nodes[{i}] has index {node.index}")
            if not node.parents:
                continue
            if not 0 <= min(node.parents) <= max(node.parents) < n:
                raise ValueError(f"nodes[{i}] names a parent that is not a node")
            if len(set(node.parents)) != len(node.parents):
                node.parents = list(dict.fromkeys(node.parents))
        if self.sota_index is not None and self.sota_index >= max(n, 1) and n:
            raise ValueError(f"sota_index {self.sota_index} is not a node")

    def section(self, name: str) -> SectionInfo:
        """Return the section called ``name``; KeyError when absent."""
        for s in self.sections:
            if s.name == name:
                return s
        raise KeyError(name)


def build_manifest(
    draft: Manifest,
    content: Mapping[str, Any],
    *,
    format_version: int,
    hash_algorithm: str,
    sections: list[SectionInfo],
    signature: SignatureInfo | None,
) -> Manifest:
    """The one place a written manifest is put together: the caller's ``draft`` (the trace it describes), the save's
    ``content`` (pickler, tables, pandas_pickled, blobs, workspace_stats) and the container's sections and signature.

    ``draft`` is not changed (a copy is returned)."""
    sizes = Sizes(raw=sum(s.raw_length for s in sections), stored=sum(s.length for s in sections))
    return draft.replace(
        **{
            **content,
            "format_version": format_version,
            "hash_algorithm": hash_algorithm,
            "sections": list(sections),
            "sizes": sizes,
            "signature": signature,
        }
    )
