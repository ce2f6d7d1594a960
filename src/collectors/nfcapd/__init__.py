"""nfcapd files (nfdump 1.7): the file layout and its compressions, the record kernel,
the reader and ``ingest nfcapd``.
"""
