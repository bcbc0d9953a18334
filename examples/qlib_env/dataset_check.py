"""Build the dataset of a Qlib config the way ``qrun`` does, and report its feature columns (run in the Qlib venv).

    .qlib-venv/bin/python examples/qlib_env/dataset_check.py <model workspace> conf_sota_factors_model.yaml

Run in the workspace RD-Agent's model runner ran ``qrun`` in, with the environment variables it rendered the
config with (``feature_names``, ``feature_expressions``, ...): the config is rendered by Qlib's own
``render_template``, its data handler built by Qlib (Alpha158DL of the base features nested with the
StaticDataLoader of ``combined_factors_df.parquet``). Prints one JSON object: rows, and for each feature
column the share of rows with a value (before the Fillna processor).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import qlib
from qlib.cli.run import render_template
from qlib.data.dataset.handler import DataHandlerLP
from qlib.utils import init_instance_by_config
from ruamel.yaml import YAML


def main() -> None:
    workspace, conf = Path(sys.argv[1]), sys.argv[2]
    os.chdir(workspace)
    config = YAML(typ="safe", pure=True).load(render_template(conf))
    init = config["qlib_init"]
    qlib.init(provider_uri=os.path.expanduser(init["provider_uri"]), region=init["region"])
    handler = init_instance_by_config(config["task"]["dataset"]["kwargs"]["handler"])
    raw = handler.fetch(col_set="feature", data_key=DataHandlerLP.DK_R)
    filled = raw.notna().mean()
    print(
        json.dumps(
            {
                "rows": len(raw),
                "instruments": int(raw.index.get_level_values("instrument").nunique()),
                "start": str(raw.index.get_level_values("datetime").min().date()),
                "end": str(raw.index.get_level_values("datetime").max().date()),
                "filled": {str(col[-1] if isinstance(col, tuple) else col): float(v) for col, v in filled.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
