"""Admission counters: RPM/TPM token buckets and budget/quota reservations, in-process or in Redis."""
