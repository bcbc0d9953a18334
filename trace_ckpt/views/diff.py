"""Compare two checkpoints from their manifests and file indexes: nothing is unpickled, rdagent is not imported.

    from trace_ckpt.views.diff import diff
    d = diff("run1.tckpt", "run1-pruned.tckpt")
    d.equal, d.only_a, d.nodes          # nodes matched by identity, not position

Both files are verified first (every section's checksum, the signature as every reader checks it). Nodes are
matched by identity: the same loop id and content (kind, experiment class, hypothesis) and code (the ``.py``
files of its workspaces); then the same content and code under another loop id (a merged input's loop ids are
shifted); then, for a node whose code changed, the same content under the loop-id shift of those pairs (the
same loop id when there are none), then the same content. What stays unmatched is "only in A / only in B".
A matched pair is compared field by field, parents through the matching (nearest common ancestors), so the nodes
``prune`` keeps are equal to the nodes they were.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trace_ckpt.ckpt import Checkpoint, PathLike
from trace_ckpt.errors import CorruptCheckpointError
from trace_ckpt.format.hashing import new_hash
from trace_ckpt.format.manifest import Manifest, NodeSummary
from trace_ckpt.quant import FACTOR_FILE, nearest_kept, node_factor_name, sota_factor_nodes
from trace_ckpt.settings import Options


@dataclass
class NodeChange:
    """One difference at node ``index`` of A (``index_b`` of B: the same node, matched by identity); -1: the trace."""

    index: int
    what: str
    a: Any
    b: Any
    index_b: int | None = None


@dataclass
class FilesChange:
    """Files that differ (content, presence, kind) in one workspace folder of node ``index`` (``index_b`` in B)."""

    index: int
    workspace: str  # "experiment workspace" or "sub-workspace <factor name>"
    paths: list[str]
    index_b: int | None = None


@dataclass
class FactorChange:
    """A SOTA factor whose code differs, or that only one side has (None = absent); values are factor.py content digests."""

    name: str
    a: list[str] | None
    b: list[str] | None


@dataclass
class TraceDiff:
    """What differs between two checkpoints: trace header, nodes matched by identity, unmatched nodes, SOTA factors."""

    a: str
    b: str
    nodes_a: int
    nodes_b: int
    header: list[NodeChange] = field(default_factory=list)  # index -1: the trace itself
    nodes: list[NodeChange] = field(default_factory=list)
    files: list[FilesChange] = field(default_factory=list)
    factors: list[FactorChange] = field(default_factory=list)
    only_a: list[int] = field(default_factory=list)  # indices of A's nodes that B does not have
    only_b: list[int] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """No difference at all: same nodes (by identity), fields, files and SOTA factors."""
        return not (self.header or self.nodes or self.files or self.factors or self.only_a or self.only_b)

    def lines(self) -> list[str]:
        """The differences, one per line (a summary line when there are none)."""
        if self.equal:
            return [f"no differences: {self.nodes_a} nodes, same decisions, metrics, factors and files"]
        out = [f"A: {self.a} ({self.nodes_a} nodes)   B: {self.b} ({self.nodes_b} nodes)"]
        out += [f"{c.what}: {_show(c.a)} -> {_show(c.b)}" for c in self.header]
        if self.only_a:
            out.append(f"nodes only in A: {_ranges(self.only_a)}")
        if self.only_b:
            out.append(f"nodes only in B: {_ranges(self.only_b)}")
        out += [f"{_node(c.index, c.index_b)}: {c.what}: {_show(c.a)} -> {_show(c.b)}" for c in self.nodes]
        out += [
            f"{_node(c.index, c.index_b)}: files of the {c.workspace} differ: {', '.join(c.paths)}" for c in self.files
        ]
        for f in self.factors:
            if f.a is None or f.b is None:
                out.append(f"SOTA factor {f.name}: only in {'B' if f.a is None else 'A'}")
            else:
                out.append(f"SOTA factor {f.name}: code differs ({_short(f.a)} -> {_short(f.b)})")
        return out


def _node(i: int, j: int | None) -> str:
    return f"node {i}" if j is None or j == i else f"node {i} (B's {j})"


def _ranges(indices: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` as ``0-2, 5``."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _show(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, list):
        return "[" + ", ".join(_show(v) for v in x) + "]"
    return "-" if x is None else str(x)


def _short(digests: list[str]) -> str:
    return ",".join(d[:12] for d in digests) or "-"


def _read_index(
    path: PathLike, options: Options, algorithm: str | None = None
) -> tuple[Manifest, dict[str, dict[str, Any]]]:
    """The manifest and files index of a checkpoint (its signature checked as every reader checks it); with
    ``algorithm`` (another than the file's, as when a v1 file is compared with a v2 one) its file digests are
    recomputed from the stored bytes with it."""
    with Checkpoint.open(path, options, fetch=False) as ck:
        bad = ck.bad_sections()  # integrity first: a damaged copy is an error, never "no differences"
        if bad:
            raise CorruptCheckpointError(
                f"{path}: {len(bad)} section(s) fail their checksum (first: {bad[0]}); the file is damaged, "
                "compare an intact copy"
            )
        blobs = ck.blobs  # a v3 files index names blobs by their number in the blob index
        files = ck.files.workspaces
        if algorithm is None or algorithm == ck.reader.hash_algorithm:
            return ck.manifest, files
        entries = [e for ws in files.values() for e in ws.get("entries", []) if e.get("type") == "file"]
        address: dict[str, str] = {}
        for digest in blobs.in_file_order({e.get("digest") for e in entries} & blobs.index.keys()):
            h = new_hash(algorithm)
            for chunk in blobs.chunks(digest):
                h.update(chunk)
            address[digest] = str(h.hexdigest())
        for e in entries:
            e["digest"] = address.get(e.get("digest"), e.get("digest"))
        return ck.manifest, files


def _tree(files: dict[str, dict[str, Any]], key: str | None) -> dict[str, tuple] | None:
    ws = files.get(key) if key is not None else None
    if not ws or not ws.get("exists", False):
        return None
    # a symlink counts by presence: its target names a folder (the data) of the machine that ran RD-Agent
    return {
        str(e.get("path")): (
            e.get("type"),
            e.get("digest") if e.get("type") == "file" else e.get("size") if e.get("type") == "skipped" else None,
        )
        for e in ws.get("entries", [])
    }


def _tree_change(a: dict | None, b: dict | None) -> list[str]:
    if a == b:
        return []
    if a is None or b is None:
        return [f"(no folder in {'A' if a is None else 'B'})"]
    return sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))


def _sota_code(m: Manifest, files: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for n in sota_factor_nodes(m.nodes):
        for i, key in enumerate(n.sub_workspaces):
            tree = _tree(files, key) or {}
            entry = tree.get(FACTOR_FILE)
            if entry and entry[0] == "file":
                out.setdefault(node_factor_name(n, i), set()).add(entry[1])
    return {name: sorted(d) for name, d in out.items()}


def diff(a: PathLike, b: PathLike, *, require_signature: bool | None = None) -> TraceDiff:
    """Compare two checkpoints, each verified first (checksums, signature), from their manifests and file indexes:
    nodes matched by identity (loop id and content), then their fields, workspace files and the SOTA factors' code."""
    options = Options.resolve(require_signature=require_signature)
    ma, fa = _read_index(a, options)
    mb, fb = _read_index(b, options, ma.hash_algorithm)  # files are compared by digest: B's are made A's kind
    try:
        return _compare(str(a), str(b), ma, fa, mb, fb)
    except (AttributeError, TypeError, KeyError, IndexError) as e:  # a checksum-valid but malformed files index
        raise CorruptCheckpointError(
            f"cannot compare {a} and {b}: a files index has an unexpected shape ({type(e).__name__}: {e})"
        ) from None


def _content(n: NodeSummary) -> Hashable:
    """What a node is, whatever its place: kind, experiment class and hypothesis."""
    return (n.kind, n.experiment_class, n.hypothesis)


def _code(n: NodeSummary, files: dict[str, dict[str, Any]]) -> Hashable:
    """The code a node ran: the content digests of the ``.py`` files of its workspaces."""
    keys = [n.experiment_workspace, *n.sub_workspaces]
    return tuple(
        tuple(sorted((path, entry[1]) for path, entry in (_tree(files, k) or {}).items() if path.endswith(".py")))
        for k in keys
    )


def match_nodes(
    a: Sequence[NodeSummary],
    b: Sequence[NodeSummary],
    code_a: Sequence[Hashable] | None = None,
    code_b: Sequence[Hashable] | None = None,
) -> dict[int, int]:
    """A's node index -> B's for the nodes both have, in order, by the first rule that pairs them: same loop id,
    content and code; same content and code (another loop id); same content under a loop-id shift those pairs
    show (a merged input's; none: the same loop id); same content."""
    ca = code_a if code_a is not None else [None] * len(a)
    cb = code_b if code_b is not None else [None] * len(b)
    pairs: dict[int, int] = {}
    taken: set[int] = set()

    def pair(key_a: Callable[[NodeSummary], Hashable], key_b: Callable[[NodeSummary], Hashable]) -> None:
        free: defaultdict[Hashable, deque[int]] = defaultdict(deque)
        for n in b:
            if n.index not in taken:
                free[key_b(n)].append(n.index)
        for n in a:
            queue = free.get(key_a(n)) if n.index not in pairs else None
            if queue:
                pairs[n.index] = queue.popleft()
                taken.add(pairs[n.index])

    pair(lambda n: (n.loop_id, _content(n), ca[n.index]), lambda n: (n.loop_id, _content(n), cb[n.index]))
    pair(lambda n: (_content(n), ca[n.index]), lambda n: (_content(n), cb[n.index]))
    # a node whose code changed (a merge renames a clashing factor in its code): its input's loop-id shift
    shifts = Counter(
        b[j].loop_id - a[i].loop_id for i, j in pairs.items() if a[i].loop_id is not None and b[j].loop_id is not None
    )
    for shift in [s for s, _ in shifts.most_common()] or [0]:
        pair(
            lambda n, s=shift: (None if n.loop_id is None else n.loop_id + s, _content(n)),
            lambda n: (n.loop_id, _content(n)),
        )
    pair(_content, _content)
    return pairs


def _compare(
    a: str, b: str, ma: Manifest, fa: dict[str, dict[str, Any]], mb: Manifest, fb: dict[str, dict[str, Any]]
) -> TraceDiff:
    d = TraceDiff(a, b, len(ma.nodes), len(mb.nodes))
    for what in ("trace_class", "scenario_class"):
        if getattr(ma, what) != getattr(mb, what):
            d.header.append(NodeChange(-1, what.replace("_", " "), getattr(ma, what), getattr(mb, what)))
    pairs = match_nodes(ma.nodes, mb.nodes, [_code(n, fa) for n in ma.nodes], [_code(n, fb) for n in mb.nodes])
    to_a = {j: i for i, j in pairs.items()}
    d.only_a = [n.index for n in ma.nodes if n.index not in pairs]
    d.only_b = [n.index for n in mb.nodes if n.index not in to_a]
    parents_a = [n.parents for n in ma.nodes]
    parents_b = [n.parents for n in mb.nodes]
    memo_a: dict[int, tuple[int, ...]] = {}
    memo_b: dict[int, tuple[int, ...]] = {}
    for i, j in sorted(pairs.items()):
        na, nb = ma.nodes[i], mb.nodes[j]
        # parents through the matching: each side's nearest ancestors that the other side has too
        pa = list(nearest_kept(parents_a, pairs, i, memo_a))
        pb = [to_a[p] for p in nearest_kept(parents_b, to_a, j, memo_b)]
        for what, x, y in (
            ("decision", na.decision, nb.decision),
            ("parents", pa, pb),
            ("loop id", na.loop_id, nb.loop_id),
            ("action", na.action, nb.action),
            ("factors", na.factors, nb.factors),
        ):
            if x != y:
                d.nodes.append(NodeChange(i, what, x, y, j))
        for k in sorted(na.metrics.keys() | nb.metrics.keys()):
            if na.metrics.get(k) != nb.metrics.get(k):
                d.nodes.append(NodeChange(i, k, na.metrics.get(k), nb.metrics.get(k), j))
        spaces = [("experiment workspace", na.experiment_workspace, nb.experiment_workspace)]
        for s in range(max(len(na.sub_workspaces), len(nb.sub_workspaces))):
            spaces.append(
                (
                    f"sub-workspace {node_factor_name(na, s) if s < len(na.sub_workspaces) else s}",
                    na.sub_workspaces[s] if s < len(na.sub_workspaces) else None,
                    nb.sub_workspaces[s] if s < len(nb.sub_workspaces) else None,
                )
            )
        for what, ka, kb in spaces:
            changed = _tree_change(_tree(fa, ka), _tree(fb, kb))
            if changed:
                d.files.append(FilesChange(i, what, changed, j))
    ca, cb = _sota_code(ma, fa), _sota_code(mb, fb)
    for name in sorted(ca.keys() | cb.keys()):
        if ca.get(name) != cb.get(name):
            d.factors.append(FactorChange(name, ca.get(name), cb.get(name)))
    return d
