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

# --merge exits 1 when it merged every record but some are not ok (a 404): that is a finished
# job, so it counts as success here. 75 says a record is missing or twice (nothing written).
rm -f out/all.jsonl
fetchmany --merge out/part-*.jsonl -o out/all.jsonl || [ $? -eq 1 ]

# --merge names a record missing between two others; one missing at the very end (a shard
# that stopped early) shows only in the count.
items=$(grep -Evc '^[[:space:]]*(#|$)' urls.txt)
records=$(wc -l < out/all.jsonl)
if [ "$records" -ne "$items" ]; then
    echo "out/all.jsonl: $records records for $items inputs; a shard stopped early:" >&2
    echo "see out/slurm-*.log, then sbatch --array=K slurm-array.sh for that shard" >&2
    exit 1
fi
echo "out/all.jsonl: $records records"
