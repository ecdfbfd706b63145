"""Suite-wide settings: one torch thread per test process.

The suite runs with pytest-xdist on 2 cores; torch's default of one thread per core in
every worker oversubscribes the machine and makes small models many times slower.
"""

import torch

torch.set_num_threads(1)
