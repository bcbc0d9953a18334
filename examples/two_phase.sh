#!/usr/bin/env bash
# The two-phase workflow on real RD-Agent (docs/guide.md walks through it):
#   phase 1 (machine A): RD-Agent evolves factors, trace-ckpt saves the run in one file;
#   phase 2 (machine B): RD-Agent's model loop evolves only models on phase 1's SOTA factors.
#
# It needs what RD-Agent needs: an LLM endpoint and a Qlib runtime, set in .env (docs/guide.md, section 2).
# It is not run by the tests (no LLM there); `make demo` is the offline rehearsal of the same steps.
#
#   examples/two_phase.sh factor             # on machine A, in the folder holding .env
#   examples/two_phase.sh model              # on machine B, after copying $CKPT there
#   examples/two_phase.sh both               # both phases on one machine
set -euo pipefail

PHASE="${1:-both}"                          # factor | model | both
FACTOR_LOOPS="${FACTOR_LOOPS:-20}"          # phase 1 loops
MODEL_LOOPS="${MODEL_LOOPS:-10}"            # phase 2 loops
RUN_DIR="${RUN_DIR:-log/factor-run1}"       # phase 1 log folder (RD-Agent's LOG_TRACE_PATH)
MODEL_DIR="${MODEL_DIR:-log/model-run1}"    # phase 2 log folder
CKPT="${CKPT:-run1.tckpt}"                  # the checkpoint of phase 1: the one file that travels
BOTH_CKPT="${BOTH_CKPT:-run2.tckpt}"        # both phases in one checkpoint
BASE_FEATURES="${BASE_FEATURES:-}"          # empty: the base features of phase 1 (Alpha20); or e.g. alpha22/
WORKSPACES="${WORKSPACES:-ws-model-run1}"   # a fresh workspace root for phase 2

# trace-ckpt does not read .env; RD-Agent's settings must be in the environment of every command.
if [[ -f .env ]]; then
    set -a
    # shellcheck disable=SC1091
    source .env
    set +a
fi

# Optional: sign the checkpoint. Give both machines the same key file (docs/guide.md, section 5), e.g.
#   python -c "import secrets; print(secrets.token_hex(32))" > ~/.trace-ckpt.key
if [[ -f "$HOME/.trace-ckpt.key" ]]; then
    export TRACE_CKPT_SIGNING_KEY_FILE="$HOME/.trace-ckpt.key"
    VERIFY_ARGS=(--require-signature)
    RESUME_ARGS=(--require-signature)   # a checkpoint signed with your key is trusted: resume runs its code
else
    VERIFY_ARGS=()
    RESUME_ARGS=(--trust)   # unsigned: resume runs its factor code, so say you trust it (your own run)
fi
# (${VERIFY_ARGS[@]+"${VERIFY_ARGS[@]}"} below: an empty array under set -u, also on bash 3.2)

factor_phase() {
    # Phase 1: factor evolution. RD-Agent writes its session dumps to $RUN_DIR/__session__ and its
    # workspaces to WORKSPACE_PATH (default ./git_ignore_folder/RD-Agent_workspace).
    LOG_TRACE_PATH="$RUN_DIR" rdagent fin_factor --loop-n "$FACTOR_LOOPS"

    # One file: the trace, its DAG and loop ids, every workspace file, the loop's base features.
    trace-ckpt save "$RUN_DIR" "$CKPT"
    trace-ckpt verify "$CKPT" ${VERIFY_ARGS[@]+"${VERIFY_ARGS[@]}"}
    trace-ckpt inspect "$CKPT"                         # the nodes, their IC, the SOTA node
    if python -c "import matplotlib" 2>/dev/null; then # pip install 'trace-ckpt[plot]'
        trace-ckpt inspect "$CKPT" --plot "${CKPT%.tckpt}.png" >/dev/null
    fi
    echo "phase 1 done: copy $CKPT to the model machine (scp, object storage, ...)"
}

model_phase() {
    # Phase 2: RD-Agent's model loop on top of the restored trace. Needs no factor data folder: the SOTA
    # factors' values travel in the checkpoint and seed RD-Agent's factor cache.
    trace-ckpt verify "$CKPT" ${VERIFY_ARGS[@]+"${VERIFY_ARGS[@]}"}
    local args=(--only model --loop-n "$MODEL_LOOPS" --log-dir "$MODEL_DIR" --workspace-root "$WORKSPACES")
    if [[ -n "$BASE_FEATURES" ]]; then
        args+=(--base-features "$BASE_FEATURES")     # base_factors.json and/or *.py, RD-Agent's format
    fi
    # First what would run and whether this machine has what the model phase needs (Qlib runtime, LLM key):
    # exit 15 with one line saying what is missing, before anything long starts.
    trace-ckpt resume "$CKPT" "${args[@]}" "${RESUME_ARGS[@]}" --dry-run
    trace-ckpt resume "$CKPT" "${args[@]}" "${RESUME_ARGS[@]}"

    # Both phases in one checkpoint, to inspect, plot or resume again later.
    trace-ckpt save "$MODEL_DIR" "$BOTH_CKPT"
    trace-ckpt inspect "$BOTH_CKPT"
}

case "$PHASE" in
    factor) factor_phase ;;
    model) model_phase ;;
    both) factor_phase; model_phase ;;
    *) echo "usage: $0 [factor|model|both]" >&2; exit 2 ;;
esac
