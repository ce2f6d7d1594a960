"""Keeping datasets bounded and tidy: expiry by age or size, compaction of small parts, and
the lock that lets both run while collectors write.
"""
