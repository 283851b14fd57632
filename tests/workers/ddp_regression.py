"""Trains a small regression with `Trainer`, in one process or under torchrun; rank 0 saves the final weights.

    python tests/workers/ddp_regression.py RUN_DIR OUT.pt                               # one process
    python -m torch.distributed.run --nproc_per_node 2 tests/workers/ddp_regression.py RUN_DIR OUT.pt

The loss is the mean over the batch's items, so two processes sharing each global batch of 16 must end where
one process does. Also writes OUT.pt.rank<r> with every rank's own final weights.
"""
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

from mesm_prem.training import ShardedBatchSampler, Trainer, TrainerConfig, dist_info, init_distributed, seed_everything

run, out = Path(sys.argv[1]), Path(sys.argv[2])
rank, world, device = init_distributed('cpu')
g = torch.Generator().manual_seed(0)
X = torch.randn(96, 6, generator=g); Y = X @ torch.randn(6, 3, generator=g) + 0.1 * torch.randn(96, 3, generator=g)
ds = TensorDataset(X, Y)

def make_loader(epoch):
    bs = BatchSampler(RandomSampler(ds, generator=torch.Generator().manual_seed(epoch)), 16, drop_last=False)
    return DataLoader(ds, batch_sampler=ShardedBatchSampler(bs) if world > 1 else bs)

def step(model, b):
    loss = ((model(b[0]) - b[1]) ** 2).mean()
    return dict(mse=loss), loss

def evaluate(model):
    with torch.no_grad(): return {'neg_mse': -float(((model(X) - Y) ** 2).mean())}

seed_everything(0)
model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
if rank > 0:   # other initial weights on purpose: DDP must broadcast rank 0's
    with torch.no_grad():
        for p in model.parameters(): p.add_(1.)
# fp32: the test compares the arithmetic of two processes with one's (bf16 rounding would swamp the all-reduce's)
cfg = TrainerConfig(lr=0.05, weight_decay=0.01, epochs=4, grad_clip=0.5, stop_score='neg_mse', save_every=3, progress=False,
                    precision='fp32')
Trainer(model, step, make_loader, evaluate, run, cfg).fit()
torch.save(model.state_dict(), f"{out}.rank{rank}")
if rank == 0: torch.save(model.state_dict(), out)
