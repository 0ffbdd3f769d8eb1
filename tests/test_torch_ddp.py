"""bnnslstm.torch.LSTM under DistributedDataParallel: 2 processes (gloo on 127.0.0.1) end with
the parameters of one process trained on the concatenated batch.

Skipped without PyTorch or without torch.distributed. The processes are children of the
test, run from a temporary directory (so they import the installed package) and killed
after a hard time limit.
"""

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

import ddp_worker  # noqa: E402  (tests/ is on pytest's pythonpath)

WORKER = pathlib.Path(ddp_worker.__file__)
TIME_LIMIT = 120  # seconds, for all processes together


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_all(commands, cwd):
    """Run the commands concurrently; kill them all when the time limit passes."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               GLOO_SOCKET_IFNAME="lo0" if sys.platform == "darwin" else "lo")  # only 127.0.0.1
    processes = [subprocess.Popen([sys.executable, str(WORKER), *map(str, c)], cwd=cwd, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for c in commands]
    deadline = time.monotonic() + TIME_LIMIT
    try:
        outputs = [p.communicate(timeout=max(deadline - time.monotonic(), 0.1))[0]
                   for p in processes]
    except subprocess.TimeoutExpired:
        for p in processes:
            p.kill()
        pytest.fail(f"data-parallel training did not finish within {TIME_LIMIT} s")
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
            p.wait()
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output


def test_ddp_on_two_processes_equals_one_process_on_the_whole_batch(tmp_path):
    port = free_port()
    outs = [tmp_path / "rank0.pt", tmp_path / "rank1.pt", tmp_path / "single.pt"]
    run_all([(0, 2, port, outs[0]), (1, 2, port, outs[1]), ("single", outs[2])], cwd=tmp_path)
    rank0, rank1, single = (torch.load(path) for path in outs)
    torch.manual_seed(1)
    initial = ddp_worker.Model().state_dict()  # the workers' starting point
    assert list(rank0) == list(single) == list(initial)
    assert any(k.startswith("lstm.weight_ch") for k in rank0)
    for name in single:
        # DDP keeps the ranks equal, and equal to one process on the whole batch
        torch.testing.assert_close(rank1[name], rank0[name], rtol=0, atol=0, msg=name)
        torch.testing.assert_close(rank0[name], single[name], rtol=1e-9, atol=1e-11, msg=name)
        assert (single[name] - initial[name]).abs().max() > 1e-3, name  # every one was trained
