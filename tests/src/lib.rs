//! Shared helpers for the integration tests: start nodes, talk to them.
