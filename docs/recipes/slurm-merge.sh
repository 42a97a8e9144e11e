#!/bin/bash
# Merge the shards of slurm-array.sh into out/all.jsonl (docs/scale-out.md); submit it to run
# after the array, whatever the tasks' exit statuses:
#
#   sbatch --dependency=afterany:${jobid%%;*} slurm-merge.sh
#
# or run it by hand (bash slurm-merge.sh) once the array is done.
#SBATCH --job-name=fetchmany-merge
#SBATCH --ntasks=1
#SBATCH --time=01:00:00
#SBATCH --output=out/slurm-merge-%j.log
set -euo pipefail

items=$(grep -Evc '^[[:space:]]*(#|$)' urls.txt || true)
rm -f out/all.jsonl
# --expect: a record missing anywhere (at the very end too) or a shard's file ending torn
# is an error (exit 75) naming the part whose shard stopped early; nothing is written then.
# --merge also exits 1 when it merged every record but some are not ok (a 404): that is a
# finished job, so it counts as success here. (Under set -e a failing command ends the
# script, but not one tested by `if`: this message always prints.)
if ! fetchmany --merge out/part-*.jsonl -o out/all.jsonl --expect "$items" \
        && [ ! -e out/all.jsonl ]; then
    echo "out/all.jsonl not written; to run the shard named above again, continuing its" >&2
    echo "file: sbatch --array=K slurm-array.sh for out/part-K.jsonl (see out/slurm-*.log)" >&2
    exit 1
fi
echo "out/all.jsonl: $(wc -l < out/all.jsonl) records"
