"""The scale-out recipes of docs/scale-out.md, run from their own files as far as one
machine allows: each recipe's shards, then its merge, must give what one unsharded run
gives, record for record (timing aside).

- Kubernetes: the manifests are read with PyYAML; each pod's command and args are expanded
  as Kubernetes expands ``$(VAR)``, with the volume's mount paths mapped to a directory here.
- Slurm: the array script runs through bash once per task, with ``SLURM_ARRAY_TASK_ID`` set
  as Slurm sets it; then the merge script.
- GNU parallel: the doc's commands run as written, with ``-S :`` (this machine) for the
  shared-filesystem variant, and for the ssh variant with two "hosts" that are directories
  here, reached through a stand-in for ssh, so that parallel's copies go through rsync.

In each, one shard's disk fills up (a file size limit, which fails a write as a full disk
does): that shard exits 75, and the recipe must run it again, and only it, to continue
its file; a shard that exits 1 (a 404 among its records) must not be run again.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LoopbackServer, fetchmany_command, run_cli

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "docs" / "recipes"
DOC = ROOT / "docs" / "scale-out.md"
TIMING = ("elapsed_ms",)
ITEMS = 13


# --------------------------------------------------------------------------------- common


def url_list(server: LoopbackServer) -> str:
    """13 items, with a 404, a line that is no URL, a comment and a blank line among them:
    the comment and the blank line are not items, so a shard must count items, not lines."""
    lines = [server.url(f"/item?id={i}&max_ms=5") for i in range(ITEMS)]
    lines[3] = server.url("/status/404")
    lines[8] = "not a url"
    lines.insert(5, "# a comment")
    lines.insert(11, "")
    return "\n".join(lines) + "\n"


def records_of(data: bytes) -> list[dict[str, Any]]:
    """JSON Lines records, timing left out."""
    rows = [json.loads(line) for line in data.splitlines()]
    for row in rows:
        for name in TIMING:
            row.pop(name, None)
    return rows


def records(path: Path) -> list[dict[str, Any]]:
    return records_of(path.read_bytes())


@dataclass
class Reference:
    """The unsharded run of the list: what every recipe must give."""

    path: Path
    records: list[dict[str, Any]]

    def line(self, index: int) -> bytes:
        return self.path.read_bytes().splitlines(keepends=True)[index]

    def shard_status(self, k: int, n: int) -> int:
        """The exit status of shard k of n: 1 when any of its records is not ok."""
        return 0 if all(r["ok"] for r in self.records[k::n]) else 1

    def interrupted_shard(self, k: int) -> bytes:
        """Shard k's file as a crash leaves it: its first record, then half of the next."""
        return self.line(k) + b'{"index": 99, "inp'


def unsharded(urls: Path, tmp_path: Path) -> Reference:
    whole = tmp_path / "whole.jsonl"
    result = run_cli(str(urls), "-q", "-o", str(whole))
    assert result.returncode == 1, result.stderr  # the 404 and the invalid line
    reference = Reference(whole, records(whole))
    assert [r["index"] for r in reference.records] == list(range(ITEMS))
    assert not all(r["ok"] for r in reference.records)
    return reference


def shell_env(**extra: str) -> dict[str, str]:
    """The environment of a shell on a host where fetchmany is installed: the console
    script's directory first on PATH, no FETCHMANY_* of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FETCHMANY_")}
    bindir = os.path.dirname(fetchmany_command()[0])
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def run(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=preexec_fn,
    )


FULL_AT = 400
"""Bytes a shard whose disk fills may write: less than two records."""


def disk_full() -> None:
    """For a process and its children: writes past ``FULL_AT`` bytes fail (EFBIG), as
    they do on a full disk (ENOSPC)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_AT, FULL_AT))


INCOMPLETE = 75
"""fetchmany's exit status for a run that could not finish (docs/reference.md "Exit status")."""


def kept_records(path: Path) -> int:
    """Whole records in a shard's file (a run that could not finish keeps only those)."""
    return len(records(path)) if path.exists() else 0


def doc_match(pattern: str) -> str:
    found = re.search(pattern, DOC.read_text())
    assert found, pattern
    return found[1]


# ----------------------------------------------------------------------------- Kubernetes


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """``$(VAR)`` in a container's command and args, expanded as Kubernetes does
    (third_party/forked/golang/expansion in kubernetes): ``$$`` is a literal ``$``, an
    undefined ``$(VAR)`` stays as written, any other ``$`` is kept."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$" or i + 1 == len(text):
            out.append(text[i])
            i += 1
            continue
        following = text[i + 1]
        if following == "(" and (close := text.find(")", i + 2)) != -1:
            name = text[i + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
            continue
        out.append("$" if following == "$" else "$" + following)
        i += 2
    return "".join(out)


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("$(JOB_COMPLETION_INDEX)/4", "2/4"),
        ("/out/part-$(JOB_COMPLETION_INDEX).jsonl", "/out/part-2.jsonl"),
        ("$$(JOB_COMPLETION_INDEX)", "$(JOB_COMPLETION_INDEX)"),
        ("$(UNDEFINED) $HOME $", "$(UNDEFINED) $HOME $"),
        ("a$(unclosed", "a$(unclosed"),
    ],
)
def test_k8s_expand_is_kubernetes_expansion(text: str, expanded: str) -> None:
    assert k8s_expand(text, {"JOB_COMPLETION_INDEX": "2"}) == expanded


def manifests(name: str) -> list[dict[str, Any]]:
    with open(RECIPES / name) as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


class Pod:
    """A pod's files as this machine stands in for them: each volume claim is a directory
    under ``claims``, mounted (its subPath) at the container's mount paths."""

    def __init__(self, spec: dict[str, Any], claims: Path) -> None:
        self.claims = {v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
        volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
        (self.container,) = spec["containers"]
        self.mounts = {
            m["mountPath"]: claims / volumes[m["name"]] / m.get("subPath", "")
            for m in self.container["volumeMounts"]
        }

    def local(self, path: str) -> Path:
        """Where a path in the container is here."""
        for mount, here in self.mounts.items():
            if path == mount or path.startswith(mount + "/"):
                return here / path[len(mount) :].lstrip("/")
        raise AssertionError(f"{path} is on no volume of the pod")

    def localize(self, text: str) -> str:
        """Every absolute path on a mount, in an argument or in a shell script."""
        mounts = "|".join(re.escape(m) for m in sorted(self.mounts, key=len, reverse=True))
        return re.sub(rf"(?<![\w./-])({mounts})(?=/|\s|$)", lambda m: str(self.mounts[m[1]]), text)

    def run(
        self, env: dict[str, str], cwd: Path, preexec_fn: Callable[[], None] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The container's command and args expanded as Kubernetes does, with the
        manifest's environment and ``env`` (what the Job controller adds)."""
        variables = {e["name"]: e["value"] for e in self.container.get("env", [])}
        variables.update(env)
        words = [*self.container["command"], *self.container.get("args", [])]
        argv = [self.localize(k8s_expand(word, variables)) for word in words]
        return run(argv, cwd, shell_env(**variables), preexec_fn)


def pod_failure_action(policy: dict[str, Any], container: str, exit_code: int) -> str:
    """What the Job controller does with a pod that failed with ``exit_code``: the action
    of the first rule of ``podFailurePolicy`` that matches it, else ``Count`` (retry,
    counting towards the backoff limit), as the Job controller decides it."""
    for rule in policy["rules"]:
        on = rule.get("onExitCodes")
        if on is None or on.get("containerName", container) != container:
            continue
        listed = exit_code in on["values"]
        if listed == (on["operator"] == "In"):
            return str(rule["action"])
    return "Count"


@pytest.mark.parametrize(
    ("code", "action"), [(1, "FailIndex"), (75, "Count"), (137, "Count"), (2, "Count")]
)
def test_the_indexed_jobs_failure_policy_retries_only_what_did_not_finish(
    code: int, action: str
) -> None:
    (job,) = manifests("k8s-indexed-job.yaml")
    spec = job["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    assert pod_failure_action(spec["podFailurePolicy"], container["name"], code) == action


def test_kubernetes_indexed_job(server: LoopbackServer, tmp_path: Path) -> None:
    storage = manifests("k8s-storage.yaml")
    (job,) = manifests("k8s-indexed-job.yaml")
    (merge_job,) = manifests("k8s-merge-job.yaml")

    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    n = spec["completions"]
    assert 1 <= spec["parallelism"] <= n
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    (container,) = pod_spec["containers"]
    assert container["command"] == ["fetchmany"]  # no shell: Kubernetes expands $(VAR)
    args = container["args"]
    assert args[args.index("--shard") + 1] == f"$(JOB_COMPLETION_INDEX)/{n}"
    assert "--resume" in args  # a retried index continues its file
    # Exit 1 (some records not ok) fails that index alone, without a retry; exit 75 (the
    # shard could not finish) is retried, up to backoffLimitPerIndex times.
    retries = spec["backoffLimitPerIndex"]
    assert retries >= 1
    policy = spec["podFailurePolicy"]
    claim = one(storage, "PersistentVolumeClaim")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # pods on several nodes
    merge_spec = merge_job["spec"]["template"]["spec"]
    assert merge_spec["containers"][0]["image"] == container["image"]

    claims = tmp_path / "claims"
    files = Pod(one(storage, "Pod")["spec"], claims)
    shards = Pod(pod_spec, claims)
    merge = Pod(merge_spec, claims)
    for pod in (files, shards, merge):
        assert pod.claims == {claim["metadata"]["name"]}

    # The doc's steps: kubectl exec fetchmany-files -- mkdir -p /work/data /work/out, and
    # kubectl cp urls.txt fetchmany-files:/work/data/urls.txt
    for made in doc_match(r"kubectl exec fetchmany-files -- mkdir -p (.+)").split():
        files.local(made).mkdir(parents=True)
    urls = files.local(doc_match(r"kubectl cp urls\.txt fetchmany-files:(\S+)"))
    urls.write_text(url_list(server))
    reference = unsharded(urls, tmp_path)

    # The Job controller: each index's pod, in any order, run again as the failure policy
    # says. Shard 2's volume fills up on its first run.
    for k in reversed(range(n)):
        part = shards.local(f"/out/part-{k}.jsonl")
        attempts = 0
        while True:
            attempts += 1
            server.reset()
            first_of_2 = k == 2 and attempts == 1
            result = shards.run(
                {"JOB_COMPLETION_INDEX": str(k)}, tmp_path, disk_full if first_of_2 else None
            )
            if first_of_2:
                assert result.returncode == INCOMPLETE, result.stderr
                kept = kept_records(part)
                assert kept < len(reference.records[2::n])
            if result.returncode == 0:
                break
            action = pod_failure_action(policy, container["name"], result.returncode)
            if action == "FailIndex":
                break
            assert action == "Count"
            assert attempts <= retries, f"index {k} failed {attempts} times"
        assert result.returncode == reference.shard_status(k, n), result.stderr
        assert attempts == (2 if k == 2 else 1)
        if k == 2:  # the retry continued the file: only the records missing were fetched
            assert server.state.requests == len(reference.records[2::n]) - kept
        assert part.is_file()

    result = merge.run({}, tmp_path)
    assert result.returncode == 0, result.stderr  # a 404 among them: still a finished job
    assert f"all.jsonl: {ITEMS} records" in result.stdout
    # kubectl cp fetchmany-files:/work/out/all.jsonl all.jsonl
    merged = files.local(doc_match(r"kubectl cp fetchmany-files:(\S+) all\.jsonl"))
    assert records(merged) == reference.records


# ---------------------------------------------------------------------------------- Slurm


def sbatch_options(script: str) -> dict[str, str]:
    """The #SBATCH options, read as sbatch reads them: up to the first command."""
    options: dict[str, str] = {}
    for line in script.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        if line.startswith("#SBATCH "):
            name, _, value = line.removeprefix("#SBATCH ").partition("=")
            options[name] = value
    return options


def test_slurm_job_array(server: LoopbackServer, tmp_path: Path) -> None:
    array_script = (RECIPES / "slurm-array.sh").read_text()
    first, _, last = sbatch_options(array_script)["--array"].partition("-")
    tasks = range(int(first), int(last) + 1)
    assert tasks.start == 0
    n = len(tasks)
    assert f"--shard ${{SLURM_ARRAY_TASK_ID}}/{n} " in array_script
    assert sbatch_options(array_script)["--output"].startswith("out/")  # hence mkdir -p out
    for name in ("slurm-array.sh", "slurm-merge.sh"):  # copied beside urls.txt
        shutil.copy(RECIPES / name, tmp_path / name)
    (tmp_path / "urls.txt").write_text(url_list(server))
    (tmp_path / "out").mkdir()
    reference = unsharded(tmp_path / "urls.txt", tmp_path)

    assert sbatch_options(array_script).get("--requeue") == ""  # so it may requeue itself
    # scontrol, as the cluster's: what the tasks ask of it is noted, one line each.
    bindir = tmp_path / "slurm-bin"
    bindir.mkdir()
    scontrol = bindir / "scontrol"
    scontrol.write_text('#!/bin/sh\necho "$*" >> "$SCONTROL_LOG"\n')
    scontrol.chmod(0o755)
    asked = tmp_path / "scontrol.log"

    def task(
        k: int,
        submitted: range = tasks,
        restarts: int | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Array task k, with the variables Slurm sets for an array of ``submitted`` (and
        SLURM_RESTART_COUNT in a task that was requeued)."""
        env = shell_env(
            SLURM_ARRAY_JOB_ID="1000",
            SLURM_ARRAY_TASK_ID=str(k),
            SLURM_ARRAY_TASK_COUNT=str(len(submitted)),
            SLURM_ARRAY_TASK_MIN=str(submitted.start),
            SLURM_ARRAY_TASK_MAX=str(submitted.stop - 1),
            SCONTROL_LOG=str(asked),
        )
        env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
        if restarts is not None:
            env["SLURM_RESTART_COUNT"] = str(restarts)
        return run(["bash", "slurm-array.sh"], tmp_path, env, preexec_fn)

    def requeues() -> list[str]:
        return asked.read_text().splitlines() if asked.exists() else []

    for k in tasks:
        server.reset()
        full = k == 2  # its disk fills up: it cannot finish, and requeues itself
        result = task(k, preexec_fn=disk_full if full else None)
        if full:
            assert result.returncode == INCOMPLETE, result.stderr
            assert requeues() == ["requeue 1000_2"]
            kept = kept_records(tmp_path / "out" / "part-2.jsonl")
            server.reset()
            result = task(k, restarts=1)  # Slurm runs the requeued task again
            assert server.state.requests == len(reference.records[2::n]) - kept
        assert result.returncode == reference.shard_status(k, n), result.stderr
    assert requeues() == ["requeue 1000_2"]  # exit 1 (shard 0 and 3) is not retried

    merge = ["bash", "slurm-merge.sh"]
    result = run(merge, tmp_path, shell_env())
    assert result.returncode == 0, result.stderr  # a 404 among them: still a finished job
    assert f"out/all.jsonl: {ITEMS} records" in result.stdout
    assert records(tmp_path / "out" / "all.jsonl") == reference.records

    # Task 2 stopped by its time limit, resubmitted alone (sbatch --array=2): it continues.
    part = tmp_path / "out" / "part-2.jsonl"
    whole_part = part.read_bytes()
    part.write_bytes(reference.interrupted_shard(2))
    server.reset()
    result = task(2, submitted=range(2, 3))
    assert result.returncode == reference.shard_status(2, n), result.stderr
    assert server.state.requests == len(reference.records[2::n]) - 1
    assert records(part) == records_of(whole_part)

    # Requeued 3 times already: a task that still cannot finish is left failed.
    part.write_bytes(b"")
    result = task(2, restarts=3, preexec_fn=disk_full)
    assert result.returncode == INCOMPLETE
    assert requeues() == ["requeue 1000_2"]
    part.write_bytes(whole_part)

    # What the merge script catches, its own message printed under set -e: a shard that
    # stopped early, at the very end of the list (no gap to see without --expect)...
    last = tmp_path / "out" / f"part-{(ITEMS - 1) % n}.jsonl"
    kept = last.read_bytes()
    last.write_bytes(b"".join(kept.splitlines(keepends=True)[:-1]))
    result = run(merge, tmp_path, shell_env())
    assert result.returncode == 1
    assert (
        f"index {ITEMS - 1} is in no part (--expect {ITEMS}): out/{last.name} stops at "
        f"index {ITEMS - 1 - n}, so its shard stopped early; resume that shard" in result.stderr
    )
    assert "sbatch --array=K slurm-array.sh" in result.stderr
    assert not (tmp_path / "out" / "all.jsonl").exists()
    # ...or before the others, which leaves a gap...
    last.write_bytes(kept)
    part.write_bytes(reference.line(2))
    result = run(merge, tmp_path, shell_env())
    assert result.returncode == 1
    assert f"index 6 is in no part: out/{part.name} stops at index 2" in result.stderr
    assert "sbatch --array=K slurm-array.sh" in result.stderr
    # ...and a record missing between two others in a shard.
    part.write_bytes(b"".join(whole_part.splitlines(keepends=True)[1:]))
    result = run(merge, tmp_path, shell_env())
    assert result.returncode == 1
    assert "index 2 is in no part; merge every shard" in result.stderr
    assert "sbatch --array=K slurm-array.sh" in result.stderr
    assert not (tmp_path / "out" / "all.jsonl").exists()


# ----------------------------------------------------------------------------- GNU parallel

SHARDS = 4
HOSTS = ("host1", "host2")

FAKE_SSH = """#!/bin/sh
# ssh [-l USER] HOST [--] COMMAND...: HOST is the directory $FAKE_HOSTS/HOST, its own home
# sharing no file with the others, and COMMAND runs there through a shell, as ssh runs it.
if [ "$1" = -l ]; then shift 2; fi
host=$1
shift
if [ "$1" = -- ]; then shift; fi
cd "$FAKE_HOSTS/$host" || exit 255
# sshd sets HOME and SHELL from the user's passwd entry (parallel's remote wrapper runs
# the job with $SHELL, so a caller without SHELL, such as a CI runner, must not leak in).
SHELL=$(getent passwd "$(id -u)" | cut -d: -f7)
export SHELL="${SHELL:-/bin/sh}"
HOME=$PWD exec sh -c "$*"
"""


def recipe(name: str, hosts: str) -> str:
    """The shell block of the doc marked ``<!-- recipe: NAME -->``, its ``-S host1,host2``
    replaced by ``hosts``."""
    found = re.search(rf"<!-- recipe: {name} -->\n```sh\n(.*?)```", DOC.read_text(), re.S)
    assert found, name
    block = found[1]
    assert f"--shard {{}}/{SHARDS} " in block
    assert block.count(" ::: " + " ".join(map(str, range(SHARDS)))) == 1
    assert block.count("-S host1,host2 ") == 1
    return block.replace("-S host1,host2 ", f"{hosts} ")


def joblog(path: Path) -> dict[int, tuple[str, int]]:
    """Shard: (host, exit status) of its last run in a parallel --joblog."""
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    jobs: dict[int, tuple[str, int]] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t", len(header) - 1), strict=True))
        shard = int(row["Command"].split("--shard ")[1].split("/")[0])
        jobs[shard] = (row["Host"], int(row["Exitval"]))
    return jobs


FILLS_UP = """#!{python}
# fetchmany, on a host whose disk fills up under shard 2 (the test plays the host's part).
import os, resource, sys
if "2/4" in sys.argv:
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


def joblog_runs(path: Path) -> list[int]:
    """The shard of each run in a parallel --joblog, in the order they are logged."""
    lines = path.read_text().splitlines()[1:]
    return [int(line.split("--shard ")[1].split("/")[0]) for line in lines]


def run_parallel_recipe(
    server: LoopbackServer, here: Path, variant: str, hosts: str, env: dict[str, str]
) -> tuple[dict[int, tuple[str, int]], dict[int, tuple[str, int]]]:
    """Recipe ``variant`` with shard 2's disk filling up, then the ``-rerun`` recipe.
    Checks what the doc says: shard 2 exits 75 and the others, done, count as such (a
    404 is exit 1, which the recipe takes as done); the merge says a record is missing;
    the rerun runs shard 2 alone, which continues its file; the result is one run's.
    Returns the joblog after each."""
    (here / "urls.txt").write_text(url_list(server))
    reference = unsharded(here / "urls.txt", here.parent)
    n = SHARDS

    bindir = here.parent / "fills-up"
    bindir.mkdir()
    wrapper = bindir / "fetchmany"
    wrapper.write_text(
        FILLS_UP.format(python=sys.executable, limit=FULL_AT, real=fetchmany_command()[0])
    )
    wrapper.chmod(0o755)
    filling = {**env, "PATH": f"{bindir}{os.pathsep}{env['PATH']}"}
    result = run(["bash", "-c", recipe(variant, hosts)], here, filling)
    assert re.search(r"index \d+ is in no part", result.stderr), result.stderr
    assert not (here / "all.jsonl").exists()
    first = joblog(here / "jobs.log")
    assert {k: status for k, (_, status) in first.items()} == {
        k: INCOMPLETE if k == 2 else 0 for k in range(n)
    }
    kept = kept_records(here / "part-2.jsonl")  # the whole records it wrote (returned)
    assert kept < len(reference.records[2::n])

    server.reset()
    result = run(["bash", "-c", recipe(variant + "-rerun", hosts)], here, env)
    assert "not ok" in result.stderr, result.stderr  # the merge's summary: the 404
    # Shard 2 alone ran again and fetched what its file was missing; shards 0 (the line
    # that is no URL) and 3 (the 404), done with exit 1, were not run again.
    runs = joblog_runs(here / "jobs.log")  # in the order they ended
    assert (sorted(runs[:n]), runs[n:]) == (list(range(n)), [2])
    assert server.state.requests == len(reference.records[2::n]) - kept
    assert f"{ITEMS} records for {ITEMS} inputs" in result.stdout
    assert records(here / "all.jsonl") == reference.records
    again = joblog(here / "jobs.log")
    assert {k: status for k, (_, status) in again.items()} == dict.fromkeys(range(n), 0)
    return first, again


def test_gnu_parallel_on_a_shared_filesystem(server: LoopbackServer, tmp_path: Path) -> None:
    here = tmp_path / "shared"
    here.mkdir()
    run_parallel_recipe(server, here, "parallel-shared", "-S :", shell_env())


def test_gnu_parallel_over_ssh_without_a_shared_filesystem(
    server: LoopbackServer, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    for host in HOSTS:
        (hosts / host).mkdir(parents=True)
    ssh = tmp_path / "ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    here = tmp_path / "here"
    here.mkdir()
    env = shell_env(FAKE_HOSTS=str(hosts))

    first, again = run_parallel_recipe(
        server, here, "parallel-ssh", f"--ssh {ssh} -S host1,host2", env
    )
    assert {host for host, _ in [*first.values(), *again.values()]} == set(HOSTS)
    assert sorted(p.name for p in here.iterdir()) == sorted(
        ["all.jsonl", "jobs.log", "urls.txt", *(f"part-{k}.jsonl" for k in range(SHARDS))]
    )
    left = [p for p in hosts.rglob("*") if p.is_file()]
    assert left == []  # --cleanup: nothing copied or returned is left on the hosts
