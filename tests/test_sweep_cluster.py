"""A two-node Ray cluster on this machine (two `ray start` processes on loopback, 1 CPU each) runs the sweep
command of the README (`training/sweep.py --address ... --storage ...`) with trials on both nodes. Slow: two
nodes and a driver start. The nodes are this test's own processes (their process groups are ended at the end),
so other Ray sessions on the machine are left alone."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.tune", reason='needs ray[tune]: pip install -e ".[sweep]"')

from tests.sweep_faults import saves  # noqa: E402, F401  (ray importable: the cluster's workers need the same)
from tests.training_fixtures import BOX_ID, TINY_ARGS, make_box_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive_nodes(address: str, env: dict) -> int:
    out = subprocess.run([*RAY, "status", f"--address={address}"], env=env, capture_output=True, text=True,
                         timeout=60)
    active = out.stdout.split("Active:")[-1].split("Pending:")[0] if "Active:" in out.stdout else ""
    return len(re.findall(r"^\s*\d+ node_", active, re.M))


@pytest.fixture
def two_nodes(tmp_path):
    env = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "minari"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "RAY_USAGE_STATS_ENABLED": "0",
           # Ray >= 2.5x turns on token authentication for `ray start` clusters; a throwaway loopback cluster opts
           # out, as Ray's message suggests for local development (a real cluster shares its token instead)
           "RAY_AUTH_MODE": "disabled"}
    os.environ["MINARI_DATASETS_PATH"] = env["MINARI_DATASETS_PATH"]
    make_box_dataset()
    make_box_dataset("test/hopper/other-v0", seed=5)
    address = f"127.0.0.1:{free_port()}"
    common = ["--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0"]
    procs = [subprocess.Popen([*RAY, "start", "--head", f"--port={address.split(':')[1]}",
                               "--include-dashboard=false", *common], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(5)
        procs.append(subprocess.Popen([*RAY, "start", f"--address={address}", *common], env=env,
                                      start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 120
        while alive_nodes(address, env) < 2:
            assert time.monotonic() < deadline, "the two Ray nodes did not come up"
            assert all(p.poll() is None for p in procs), "a `ray start` exited"
            time.sleep(2)
        yield address, env
    finally:
        for p in reversed(procs):  # `ray start --block` stops its node's processes on SIGTERM
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever of its session is left (its own process group: nothing else is touched)
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.environ.pop("MINARI_DATASETS_PATH", None)
        # `ray start --head` leaves its address for `ray.init("auto")` in /tmp/ray: drop it if it names ours
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.is_file() and current.read_text().strip().endswith(":" + address.split(":")[1]):
            current.unlink()


@pytest.mark.slow
def test_two_node_cluster_runs_the_sweep_command_on_both_nodes(two_nodes, tmp_path):
    address, env = two_nodes
    settings = [f"{TINY_ARGS[i][2:].replace('-', '_')}={TINY_ARGS[i + 1]}" for i in range(0, len(TINY_ARGS), 2)]
    storage = tmp_path / "shared"  # one machine: its disk is the nodes' shared storage
    out = subprocess.run([sys.executable, "training/sweep.py", "--datasets", BOX_ID, "test/hopper/other-v0",
                          "--seeds", "0", "--steps", "20", "--address", address, "--storage", str(storage),
                          "--name", "cluster", "--set", *settings, "batch_size=8", "save_every=10", "log_every=5",
                          "eval_episodes=1", "eval_num_envs=1", "video=false", "device=cpu"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| test/hopper/tiny-v0 |" in out.stdout
    nodes = set()
    for trial in (storage / "cluster" / "tune").glob("hopper-*-seed0"):
        nodes |= {json.loads(x)["node_id"] for x in (trial / "result.json").read_text().splitlines()}
    assert len(nodes) == 2, nodes  # one trial on each node (1 CPU each)
    for key in ("hopper-tiny-v0-seed0", "hopper-other-v0-seed0"):
        assert (storage / "cluster" / "runs" / key / "model.safetensors").is_file()
