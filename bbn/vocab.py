"""The words each choice may take, one home each: the library's modules check their arguments
against these tuples and the params schema (``stages/params.py``) takes its allowed values from
them, as it takes the methods from ``bbn.methods``. A leaf module: importing it loads nothing else,
so a stage that validates params does not depend on the model or training code."""

DATASETS = ("digits", "inat2017", "inat2018", "inat2019", "cifar10_lt", "cifar100_lt", "imagefolder")
BACKBONES = ("resnet32", "resnet50")  # bbn.model.network.BACKBONES builds them
ANTIALIAS = ("off", "stem", "full")  # where BlurPool goes: bbn.model.network.antialias_sites
SHORTCUTS = ("conv", "pad")  # option B (1x1 conv + BN) | option A (parameter-free; ResNet-32)
CLASSIFIERS = ("separate", "official")  # two heads (the paper's equation) | the official one FC
INITS = ("fan_out", "official")  # convolution init: bbn.model.network._init_weights
ALPHA_SCHEDULES = ("parabolic", "linear", "cosine", "fixed")  # bbn.train.schedules.cumulative_alpha
AUGMENTS = ("cifar", "inception")  # bbn.data.transforms
NORMALIZATIONS = ("imagenet", "cifar")  # mean/std: bbn.data.transforms.NORMALIZE
SHOT_GROUPS = ("fixed", "terciles")  # bbn.data.stats
AMP = ("off", "bf16", "fp16")  # bbn.train.speed.Speed
LR_SCALINGS = ("linear", "fixed")  # bbn.train.distributed.effective_lr
IN_MEMORY = ("auto", "on", "off")  # the in-memory input path: bbn.data.inmemory.choose_in_memory
CLASSIFIER_METHODS = ("none", "crt", "lws", "tau_norm", "mislas")  # the classifier stage: bbn.classifier
FEATURE_BRANCHES = ("conventional", "reversed", "both")  # which features it re-balances: bbn.classifier.heads
SMOOTH_SHAPES = ("concave", "linear", "convex")  # label-aware smoothing's eps(N_y): bbn.classifier.smoothing
