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
table was rewritten too. Publishing the checkpoint digest outside the database (a ticket, an
e-mail, a print-out) anchors everything before it.

Each event's hash is SHA-256 over its RFC 8785 canonical JSON, which includes the previous hash
of its chain. The database rejects UPDATE and DELETE on audit rows with triggers.
"""
