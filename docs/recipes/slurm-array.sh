#!/bin/bash
# fetchmany over a Slurm job array (docs/scale-out.md): array task K fetches the items of
# urls.txt whose index mod 4 == K into out/part-K.jsonl. From the directory holding urls.txt:
#
#   mkdir -p out
#   jobid=$(sbatch --parsable slurm-array.sh)
#   sbatch --dependency=afterany:${jobid%%;*} slurm-merge.sh
#
# 4 = the number of tasks in --array=0-3: change both together. The 4 is written out, not
# taken from SLURM_ARRAY_TASK_COUNT, so that `sbatch --array=2 slurm-array.sh` runs shard 2
# of 4 again (it continues out/part-2.jsonl where it stopped: --resume).
#SBATCH --job-name=fetchmany
#SBATCH --array=0-3
#SBATCH --requeue
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=out/slurm-%A_%a.log
set -euo pipefail

status=0
fetchmany urls.txt --shard ${SLURM_ARRAY_TASK_ID}/4 -o out/part-${SLURM_ARRAY_TASK_ID}.jsonl --resume || status=$?

# 75: the shard could not finish (its disk filled, an input became unreadable). Requeue it,
# at most 3 times, to continue its file. 1 (run to its end, some records not ok) is final.
if [ "$status" -eq 75 ] && [ "${SLURM_RESTART_COUNT:-0}" -lt 3 ]; then
    echo "shard ${SLURM_ARRAY_TASK_ID} could not finish; requeued to continue its file" >&2
    scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
fi
exit "$status"
