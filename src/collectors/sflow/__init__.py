"""sFlow v5 datagrams: flow samples, sampled headers, counter samples."""
