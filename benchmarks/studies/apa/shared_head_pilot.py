"""One adapter on the first 256 prompts of the paper-scale seed-0 training draw (the 5-epoch schedule),
validated on its 500 validation prompts, with a given encoder head: picks the shared head's norm.

Usage: OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/studies/apa/shared_head_pilot.py HEAD NORM
"""

import json
import sys

import numpy as np
import torch

from recunlearn.bench.apa import ApaBenchConfig, prepare_samples
from recunlearn.models.llm.backbones import BackboneConfig
from recunlearn.models.llm.lora import LoRAConfig
from recunlearn.train.adapter import AdapterJob, AdapterTrainConfig, train_adapter

torch.set_num_threads(1)
head, norm = sys.argv[1], float(sys.argv[2])
train, valid, _ = prepare_samples(ApaBenchConfig(n_train=1024, n_valid=500, n_test=1000))
config = AdapterTrainConfig(lr=1e-3, batch_size=16, max_epochs=5, patience=1, eval_every=5)
result = train_adapter(
    AdapterJob(
        0,
        BackboneConfig(head=head, head_norm=norm),
        LoRAConfig(),
        config,
        0,
        train.take(np.arange(256)),
        valid,
        "cpu",
    )
)
print(json.dumps({"head": head, "head_norm": norm, **result.info}))
