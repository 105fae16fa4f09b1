"""Command-line tools on a trained model and the tracking store: ``bbn-predict`` (classify image
files with a checkpoint) and ``bbn-report`` (compare finished MLflow runs, mean ± std over seeds)."""
