#!/usr/bin/env bash
# Calibration of the synthetic atlas with the real pipeline (paper preset, one stage):
# generate -> CNN features (default layer) + bag of words -> fit -> level_auc.
# Usage: benchmarks/calibrate_pipeline.sh [GENES] [STAGE] [WORKDIR]
# The table it prints is recorded in docs/synthetic.md ("Calibration with the pipeline").
set -euo pipefail
GENES="${1:-300}"
STAGE="${2:-E15.5}"
WORK="${3:-/tmp/ishwh-calibration}"
ISHWH="${ISHWH:-$(dirname "$0")/../.venv/bin/ishwh}"
mkdir -p "$WORK"
DB="$WORK/paper.duckdb"
export ISHWH_DB="$DB"
time_step() { local t0=$SECONDS; "$@"; echo "  ($((SECONDS - t0)) s: $*)" >&2; }
time_step "$ISHWH" init
time_step "$ISHWH" ingest synthetic --preset paper --genes "$GENES" --stages "$STAGE"
time_step "$ISHWH" featurize --extractor cnn --stage "$STAGE"
time_step "$ISHWH" featurize --extractor bow --stage "$STAGE"
time_step "$ISHWH" featurize --extractor grid --stage "$STAGE"
for fs in $("$ISHWH" sql "select name from feature_sets order by name" --format csv | tail -n +2); do
    time_step "$ISHWH" fit --features "$fs" --stage "$STAGE" --json > /dev/null
done
"$ISHWH" sql "select feature_set, level, n_structures, n_excluded, round(mean_auc, 3) as mean_auc,
              round(std_auc, 3) as std_auc from level_auc order by feature_set, level" --format csv
"$ISHWH" sql --query table1_overall --format csv
