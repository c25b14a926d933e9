"""Developer tooling around the backend: a real Label Studio on loopback (tests, demo). Not part of the product."""
