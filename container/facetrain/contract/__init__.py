"""The contract between the training job and the Lambdas: names (channels, files), the settings schema,
the config files' reader, and the readers and writers of the job's outputs (rules.py, the embeddings pickle,
the enrollment CSV).

Torch-free (no torch, matplotlib or boto3: `make lint` checks it with import-linter): the Lambdas' layer
ships this package whole (container/Makefile), so the workflow checks and reads exactly what the job
consumes and writes.
"""
