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
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=out/slurm-%A_%a.log
set -euo pipefail

fetchmany urls.txt --shard ${SLURM_ARRAY_TASK_ID}/4 -o out/part-${SLURM_ARRAY_TASK_ID}.jsonl --resume
