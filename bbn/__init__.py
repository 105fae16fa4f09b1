"""bbn: long-tailed image classification with the Bilateral-Branch Network (Zhou et al., CVPR 2020)
on an anti-aliased ResNet (Zhang, ICML 2019).

Subpackages follow the pipeline's phases: ``sources`` (datasets into the iNaturalist layout),
``data`` (image checks, split, statistics, the prepared cache, loading and samplers), ``model``
(network, anti-aliasing, weights, inference), ``train`` (loop, schedules, losses, distributed,
resume), ``evaluate`` (metrics, post-hoc adjustment, plots, submission), ``tracking`` (MLflow) and
``cli`` (``bbn-predict``, ``bbn-report``); ``methods`` is the registry of training methods. The library
takes plain arguments: only the project's ``stages/`` know its parameter file and pipeline tool.
"""

__version__ = "0.2.0"
