"""Train: one loop for every method with a step per method (``loop``), cumulative-learning alpha and
learning-rate schedules (``schedules``), the bilateral and baseline losses (``losses``),
DistributedDataParallel under torchrun (``distributed``) and the per-epoch resume state (``resume``)."""
