"""CDR files (CSV): sniffing, mappings, value transforms, kernels, streaming reader and the
exactly-once ingest with its ledger.
"""
