import torch

# The suite's tensors are tiny: on a 2-core machine, one thread avoids oversubscription
# (small convolutions ran orders of magnitude slower with several threads).
torch.set_num_threads(1)
