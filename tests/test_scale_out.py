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
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def held_by_another_run(path: Path, content: bytes) -> Iterator[None]:
    """``path`` holding ``content``, locked as a running fetchmany locks its output: a
    shard given it as ``-o`` fails at once (exit 2) and leaves it as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


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

    def run(self, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
        """The container's command and args expanded as Kubernetes does, with the
        manifest's environment and ``env`` (what the Job controller adds)."""
        variables = {e["name"]: e["value"] for e in self.container.get("env", [])}
        variables.update(env)
        words = [*self.container["command"], *self.container.get("args", [])]
        argv = [self.localize(k8s_expand(word, variables)) for word in words]
        return run(argv, cwd, shell_env(**variables))


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
    # Exit 1 (some records not ok) fails that index alone, without a retry.
    assert spec["backoffLimitPerIndex"] >= 1
    (on_exit_1,) = [rule for rule in spec["podFailurePolicy"]["rules"] if "onExitCodes" in rule]
    assert on_exit_1["action"] == "FailIndex"
    assert on_exit_1["onExitCodes"] == {
        "containerName": container["name"],
        "operator": "In",
        "values": [1],
    }
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

    for k in reversed(range(n)):  # the pods, one per completion index, in any order
        result = shards.run({"JOB_COMPLETION_INDEX": str(k)}, tmp_path)
        assert result.returncode == reference.shard_status(k, n), result.stderr
        assert shards.local(f"/out/part-{k}.jsonl").is_file()

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

    def task(k: int, submitted: range = tasks) -> subprocess.CompletedProcess[str]:
        """Array task k, with the variables Slurm sets for an array of ``submitted``."""
        env = shell_env(
            SLURM_ARRAY_JOB_ID="1000",
            SLURM_ARRAY_TASK_ID=str(k),
            SLURM_ARRAY_TASK_COUNT=str(len(submitted)),
            SLURM_ARRAY_TASK_MIN=str(submitted.start),
            SLURM_ARRAY_TASK_MAX=str(submitted.stop - 1),
        )
        return run(["bash", "slurm-array.sh"], tmp_path, env)

    for k in tasks:
        result = task(k)
        assert result.returncode == reference.shard_status(k, n), result.stderr

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


def run_parallel_recipe(
    server: LoopbackServer, here: Path, variant: str, hosts: str, env: dict[str, str]
) -> tuple[dict[int, tuple[str, int]], dict[int, tuple[str, int]]]:
    """Recipe ``variant`` with shard 2 failing (its file held by another run), then the
    ``-rerun`` recipe. Checks what the doc says: the merge names the torn shard; the
    rerun runs the failed shards again, shard 2 continuing its file and the shards that
    failed only for records not ok finding nothing to do; the result is one run's.
    Returns the joblog after each."""
    (here / "urls.txt").write_text(url_list(server))
    reference = unsharded(here / "urls.txt", here.parent)
    n = SHARDS

    held = [here / "part-2.jsonl"]
    remote = "--wd fetchmany-run" in recipe(variant, hosts)
    if remote:  # shard 2 runs there, on either host
        held = [Path(env["FAKE_HOSTS"], h, "fetchmany-run", "part-2.jsonl") for h in HOSTS]
    with ExitStack() as stack:
        for path in held:
            stack.enter_context(held_by_another_run(path, reference.interrupted_shard(2)))
        result = run(["bash", "-c", recipe(variant, hosts)], here, env)
    # Shard 2's file ends in a torn record (index 2, then half of the next): named.
    assert "part-2.jsonl ends in a torn record" in result.stderr
    assert not (here / "all.jsonl").exists()
    first = joblog(here / "jobs.log")
    assert {k: status for k, (_, status) in first.items()} == {
        k: 2 if k == 2 else reference.shard_status(k, n) for k in range(n)
    }
    if remote:  # what the lock left on the host that did not run shard 2
        for path in held:
            path.unlink(missing_ok=True)

    server.reset()
    result = run(["bash", "-c", recipe(variant + "-rerun", hosts)], here, env)
    assert "not ok" in result.stderr, result.stderr  # the merge's summary: the 404
    # Shard 2 fetched the items after its first; shards 0 (the line that is no URL) and 3
    # (the 404), run again for their exit 1, found nothing to do.
    assert server.state.requests == len(reference.records[2::n]) - 1
    assert f"{ITEMS} records for {ITEMS} inputs" in result.stdout
    assert records(here / "all.jsonl") == reference.records
    again = joblog(here / "jobs.log")
    assert {k: status for k, (_, status) in again.items()} == {
        k: reference.shard_status(k, n) for k in range(n)
    }
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
