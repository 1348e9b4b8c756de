"""The append-only, hash-chained audit trail.

Partitioning. Events are chained per *subject* (a patient, a prescriber, a pharmacy ...), not in
one global chain. A global chain would make every write in the database queue on one row lock,
so two pharmacy terminals serving two different patients would wait for each other. With one
chain per subject, an append locks only its own chain head; writes for different subjects
proceed in parallel on PostgreSQL.

What ties the chains together is the checkpoint: an event in the ``system`` chain that records the
head (sequence and hash) of every chain that moved since the previous checkpoint. Verification
checks each chain link by link, each chain head against the head table, and every checkpoint
against the chains it names, so truncating a chain behind a checkpoint is caught even if the head
table was rewritten too. Each checkpoint is signed with an Ed25519 key kept outside the database
(``signing``), over a digest of every chain's head: someone who can rewrite the database can
recompute hashes but not signatures. Publishing the signed checkpoint outside the database (a
witness, write-once storage) also exposes a restored older backup.

Each event's hash is SHA-256 over its RFC 8785 canonical JSON, which includes the previous hash
of its chain. The database rejects UPDATE, DELETE (and on SQLite REPLACE) on audit rows with
triggers; on PostgreSQL the service runs as a role that cannot disable them.
"""
