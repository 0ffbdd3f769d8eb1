"""Data-parallel training of bnnslstm.torch.LSTM, run as a script by ``test_torch_ddp.py``.

``python ddp_worker.py single OUT`` trains on the whole batch in one process;
``python ddp_worker.py RANK WORLD PORT OUT`` trains this rank's share of the same batch
under ``DistributedDataParallel`` (gloo, 127.0.0.1:PORT). Each saves its final parameters
to ``OUT`` with ``torch.save``. Each rank's loss is the mean over its share, and DDP
averages the gradients across ranks, so both runs take the same steps (the shares are
equal) up to rounding.
"""

import sys

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

import bnnslstm.torch as bt

STEPS, WORLD, SHARE, T, I, H = 4, 2, 5, 7, 3, 6


class Model(torch.nn.Module):
    """A stacked bidirectional LSTM with peepholes on variable-length sequences, and a head
    on the last layer's final states."""

    def __init__(self):
        super().__init__()
        self.lstm = bt.LSTM(I, H, 2, batch_first=True, bidirectional=True, peephole="diagonal",
                            dtype=torch.float64)
        self.head = torch.nn.Linear(2 * H, 1, dtype=torch.float64)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return self.head(torch.cat([h_n[-2], h_n[-1]], dim=1))


def batches():
    """STEPS batches of WORLD * SHARE samples, the same in every process."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        x = torch.randn(WORLD * SHARE, T, I, dtype=torch.float64, generator=generator)
        lengths = torch.randint(1, T + 1, (WORLD * SHARE,), generator=generator)
        target = torch.randn(WORLD * SHARE, 1, dtype=torch.float64, generator=generator)
        yield x, lengths, target


def train(model, share=slice(None)):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.5)
    for x, lengths, target in batches():
        optimizer.zero_grad()
        # the mean over this share
        F.mse_loss(model(x[share], lengths[share]), target[share]).backward()
        optimizer.step()


def main(argv):
    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = Model()
    if argv[0] == "single":
        train(model)
        torch.save(model.state_dict(), argv[1])
        return
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world, port, out = int(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    assert world == WORLD
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        train(DistributedDataParallel(model), slice(rank * SHARE, (rank + 1) * SHARE))
        torch.save(model.state_dict(), out)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
