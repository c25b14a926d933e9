"""The security tier: hostile input, leaks and load against the real app (see README, Hardening)."""
