"""bbn: long-tailed image classification with the Bilateral-Branch Network (Zhou et al., CVPR 2020).

The library knows nothing about DVC: ``stages/`` reads params.yaml and calls it.
"""

__version__ = "0.1.0"
