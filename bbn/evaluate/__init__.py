"""Evaluate: metrics for long-tailed recognition (top-k, macro, worst-class, many/medium/few-shot,
NLL, ECE: ``metrics``), post-hoc logit adjustment (``posthoc``), predictions and the per-class report
(``predictions``), figures (``plots``) and the Kaggle submission (``submission``). It uses the model's
inference, never the training loop."""
