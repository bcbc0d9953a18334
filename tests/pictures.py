"""Reading back what a trace plot shows, for the plot and example tests."""

from __future__ import annotations

from trace_ckpt.plot import KEY_IC

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def points(fig: object, key: str) -> dict[int, tuple[float, str]]:
    """What the figure shows for ``key``: node index -> (y, 'accepted'|'rejected'), read from its artists."""
    ax = fig.axes[0 if key == KEY_IC else 1]
    shown: dict[int, tuple[float, str]] = {}
    for coll in ax.collections:
        gid = coll.get_gid() or ""
        if not gid.startswith(f"points:{key}:"):
            continue
        state = gid.rsplit(":", 1)[1]
        for x, y in coll.get_offsets():
            assert int(x) not in shown, f"node {int(x)} drawn twice"
            shown[int(x)] = (float(y), state)
    return shown
