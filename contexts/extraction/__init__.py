"""The job engine: model-driven updates of a snapshot from its unseen messages.

A run goes queued -> running -> succeeded | failed | skipped.
- runs.py: asking for an update (requests that pile up collapse into one queued run).
- dispatch.py: getting runs to the workers (by task name), and again when the broker lost them.
- claim.py: a worker taking a run, safely against redeliveries and dead workers.
- apply.py: doing a run: the extractor outside any transaction, then one versioned write.
- extractors/ and llm.py: turning previous snapshot + unseen messages into the next snapshot.
"""
