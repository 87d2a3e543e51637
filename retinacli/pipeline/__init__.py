"""The batch run: inputs -> decode workers -> batched inference -> post-process/write workers -> ledger -> reports."""
