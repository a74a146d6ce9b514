"""The matching worker: sequencing, the durable command log, snapshots and transport."""
