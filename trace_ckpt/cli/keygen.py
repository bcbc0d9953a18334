"""``trace-ckpt keygen``: an Ed25519 key pair for signing checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trace_ckpt.cli.app import app
from trace_ckpt.cli.options import Force, Json, Quiet, Verbose
from trace_ckpt.cli.render import emit_json, say, wrote


@app.command()
def keygen(
    out_path: Annotated[
        Path,
        typer.Argument(metavar="OUT", help="private key file to write (mode 0600); the public key goes to OUT.pub"),
    ],
    comment: Annotated[
        str | None,
        typer.Option("--comment", help="the name the public key carries, which verify reports (default: user@host)"),
    ] = None,
    force: Force = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Make an Ed25519 key pair: sign with OUT on one machine, verify with OUT.pub everywhere else."""
    import getpass
    import socket

    from trace_ckpt.signing import generate_key_pair

    if comment is None:
        try:
            comment = f"{getpass.getuser()}@{socket.gethostname()}"
        except (KeyError, OSError):
            comment = ""
    kid = generate_key_pair(out_path, comment=comment, force=force)
    wrote(f"{out_path} and {out_path}.pub")
    if as_json:
        emit_json(
            {
                "private_key": str(out_path.absolute()),
                "public_key": f"{out_path.absolute()}.pub",
                "key_id": kid,
                "comment": comment,
            }
        )
        return
    say(
        f"wrote {out_path} (private: keep it here, TRACE_CKPT_PRIVATE_KEY_FILE={out_path.absolute()}) and {out_path}.pub "
        f"(public: copy it into TRACE_CKPT_TRUSTED_KEYS on the machines that verify); key {kid} {comment}"
    )
