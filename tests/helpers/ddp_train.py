"""Launched by torchrun in tests/train/test_training.py: trains a tiny model with DDP (gloo) and writes each rank's
parameter vector so the test can check the replicas stayed identical."""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist


from crystalframer import CrystalFramer  # noqa: E402
from crystalframer.train.trainer import TrainConfig, Trainer  # noqa: E402
from helpers.tiny import labelled_structures, tiny_config  # noqa: E402

out = Path(sys.argv[1])
structures, labels = labelled_structures(24)
model = CrystalFramer(tiny_config())
graphs = [model.make_graph(s, target=[y], ident=f"s{k}") for k, (s, y) in enumerate(zip(structures, labels))]
trainer = Trainer(model, graphs[:16], graphs[16:], TrainConfig(epochs=2, batch_size=4, swa_epochs=1, device="cpu",
                                                               progress=False, threads=1), out)
trainer.fit()
vec = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
np.save(out / f"params_rank{dist.get_rank()}.npy", vec)
dist.barrier()
dist.destroy_process_group()
