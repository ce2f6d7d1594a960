"""The analyst's face: a read-only workspace API, Arrow reads, queries and plots."""
