"""The pipeline's stages: one short script per DVC stage, plus the helpers that only stages use
(params schema, paths, the stage runner, MLflow glue, code dependencies)."""
