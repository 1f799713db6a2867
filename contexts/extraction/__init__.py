"""The job engine: model-driven updates of a snapshot from its unseen messages.

A run goes queued -> running -> succeeded | failed | skipped.
- runs.py: asking for an update (requests that pile up collapse into one queued run).
- dispatch.py: getting runs to the workers (by task name), and again when the broker lost them.
- leases.py: how a live attempt is told from a dead one (the lease, PostgreSQL advisory locks).
- claim.py: a worker taking a run, safely against redeliveries and dead workers.
- apply.py: doing a run: the extractor outside any transaction, then one versioned write.

Layers: runs, dispatch and leases sit below the services (services.messages_post queues a run through them);
claim and apply sit above (a run's result is written through services.snapshots.snapshot_write).
- extractors/ and llm.py: turning previous snapshot + unseen messages into the next snapshot.
"""
