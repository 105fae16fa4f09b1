"""The classifier stage: the two-stage long-tail family on a trained network (any method, BBN included).

* cRT, LWS, tau-normalisation: Kang et al., "Decoupling Representation and Classifier for
  Long-Tailed Recognition", ICLR 2020 (facebookresearch/classifier-balancing);
* MiSLAS stage 2: Zhong et al., "Improving Calibration for Long-Tailed Recognition", CVPR 2021
  (dvlab-research/MiSLAS): label-aware smoothing and the BatchNorm shift.

``ClassifierSpec`` (``spec``) says what to do, ``heads`` reads and writes a branch's classifier as
one linear map, ``retrain`` trains it on class-balanced batches, ``tau`` chooses tau on val,
``smoothing`` is MiSLAS's loss. ``rebalance`` runs one spec; the network it returns is the
project's ``BilateralNet``, so the checkpoint loader, evaluation and ``bbn-predict`` take it as is.
The package imports nothing itself: the params schema checks a spec (``spec.check``) without torch.
"""
