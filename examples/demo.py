"""The offline two-phase rehearsal behind `make demo`.

Phase 1 runs RD-Agent's own factor loop (simulated LLM and Qlib backtest, labelled as such), then
`trace-ckpt save` / `inspect`; phase 2 runs `trace-ckpt resume --only model` in a separate folder with
no factor data, as a second machine would; both phases are then saved in one checkpoint and drawn with
`trace-ckpt inspect --plot` (demo-out/trace.png). Everything lands in ./demo-out (or the folder given).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from examples.demo_commands import print_commands  # noqa: E402
from examples.offline.run import offline_env, run_factor_loop  # noqa: E402

CLI = str(Path(sys.executable).parent / "trace-ckpt")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"demo: `trace-ckpt {' '.join(args)}` failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out").absolute()
    shutil.rmtree(out, ignore_errors=True)
    factor_box, model_box = out / "factor-machine", out / "model-machine"

    step("phase 1: RD-Agent factor evolution, 4 loops (simulated LLM answers and Qlib backtest)")
    log_dir = run_factor_loop(factor_box, 4)
    env1 = {**os.environ, **offline_env(factor_box)}
    print(f"RD-Agent log folder: {log_dir}")

    step("trace-ckpt save")
    ckpt = out / "run1.tckpt"
    print(cli(["save", str(log_dir), str(ckpt), "--allow-module", "examples"], env1, factor_box).strip())
    session = folder_bytes(log_dir / "__session__")
    print(
        f"checkpoint {ckpt.stat().st_size / 1024:.0f} KB vs RD-Agent's __session__ folder {session / 1024:.0f} KB "
        f"({session / ckpt.stat().st_size:.0f}x smaller), workspaces included"
    )

    step("trace-ckpt inspect")
    print(cli(["inspect", str(ckpt)], {**env1, "COLUMNS": "140"}, factor_box))
    manifest = json.loads(cli(["inspect", str(ckpt), "--json"], env1, factor_box))

    step("phase 2, on 'another machine' (a new folder, no factor data): trace-ckpt resume --only model --loop-n 2")
    model_box.mkdir(parents=True)
    env2 = {**os.environ, **offline_env(model_box, "model")}
    # --trust: resume runs the checkpoint's factor code; this unsigned file is our own run's (docs/security.md)
    resumed = cli(
        ["resume", str(ckpt), "--only", "model", "--loop-n", "2", "--allow-module", "examples", "--trust"],
        env2,
        model_box,
    )
    print(resumed.strip().splitlines()[-1])  # RD-Agent's own progress log is in the run's log folder

    os.environ["ARTIFACT_SIGNING_KEY"] = env2["ARTIFACT_SIGNING_KEY"]  # before rdagent reads its settings
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    from rdagent.core.serialization import loads

    from trace_ckpt.rdagent.logs import rdagent_logs_off
    from trace_ckpt.rdagent.sessions import list_dumps

    model_log = Path(env2["LOG_TRACE_PATH"])
    step("trace-ckpt save + inspect --plot: both phases in one checkpoint, and a picture of it")
    both = out / "run2.tckpt"
    print(cli(["save", str(model_log), str(both), "--allow-module", "examples"], env2, model_box).strip())
    plot = out / "trace.png"
    print(cli(["inspect", str(both), "--plot", str(plot)], {**env2, "COLUMNS": "140"}, model_box))
    manifest2 = json.loads(cli(["inspect", str(both), "--json"], env2, model_box))
    points = sum(1 for n in manifest2["nodes"] if "IC" in n["metrics"])

    with rdagent_logs_off():  # unpickling imports RD-Agent's modules, whose logger would write ./log/<time>/ here
        trace = loads(list_dumps(model_log / "__session__")[-1].path.read_bytes()).trace
    first_model = next(exp for exp, _ in trace.hist if type(exp).__name__ == "QlibModelExperiment")
    sota = [b for b in first_model.based_experiments if type(b).__name__ == "QlibFactorExperiment" and b.sub_tasks]
    factors = [t.factor_name for b in sota for t in b.sub_tasks]
    calls = [json.loads(line)["entry"] for line in (model_box / "backtest_calls.jsonl").read_text().splitlines()]

    step("summary")
    print(f"phase 1: {manifest['counts']['hist']} nodes, {manifest['counts']['accepted']} accepted")
    print(
        f"phase 2: the first model experiment received {len(sota)} SOTA factor experiments "
        f"({len(factors)} factors: {', '.join(factors)})"
    )
    print(f"         base features: {len(first_model.base_features)} (RD-Agent's Alpha20 from the checkpoint's plan)")
    print(f"         simulated backtest configs asked for: {sorted({c for c in calls if c.startswith('qrun')})}")
    print(
        f"         new nodes: {len(trace.hist) - manifest['counts']['hist']}, loop ids {sorted(trace.idx2loop_id.values())}"
    )
    print(
        f"plot: {plot} ({points} nodes with an IC, factor and model phases coloured, accepted filled, "
        f"SOTA ringed; drawn from {both.name}'s manifest)"
    )
    print(f"checkpoints: {ckpt} (phase 1), {both} (both phases)\nphase 1 logs: {log_dir}\nphase 2 logs: {model_log}")
    print(
        "(LLM answers, LLM-written code and the Qlib backtest were simulated; everything else was RD-Agent's own code.)"
    )
    print_commands(out, log_dir, env1["ARTIFACT_SIGNING_KEY"])  # each command it prints was run first


if __name__ == "__main__":
    main()
