"""``python -m trace_ckpt``: the ``trace-ckpt`` command line."""

from trace_ckpt.cli import main

if __name__ == "__main__":
    main()
