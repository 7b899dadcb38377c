import json
import os
import shutil
import subprocess
import sys
import warnings

import pytest


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--standalone",
        "-m",
        "training.dcgan",
        "--dataset",
        "digits",
        "--out",
        str(out),
        "--batch-size",
        "16",
        "--max-steps",
        "3",
        "--ckpt-every",
        "2",
        "--no-export",
        "--no-progress",
        "--threads",
        "1",
        "--minibatch-discrimination",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for _ in range(3):
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=60)
        if proc.returncode == 0 or "terminate called without an active exception" not in proc.stderr:
            break
        # 1-2 runs in 8 on this machine, a process aborts in gloo's teardown after destroy_process_group, once
        # its work is done (seen only with --minibatch-discrimination). Rerun so that race does not fail the test.
        warnings.warn("torchrun: a process aborted at gloo teardown; rerunning", stacklevel=1)
        shutil.rmtree(out, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["step"] == 3
    assert len(list(out.glob("ckpt-*.safetensors"))) == 1  # only rank 0 writes
    assert proc.stdout.count("3 steps") == 1
