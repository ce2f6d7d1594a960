"""Flow enrichment: AS numbers and countries from MaxMind-format databases, interface names
and speeds from the operator's TOML files (see :mod:`collectors.enrich.enricher`).
"""
