"""Packet captures: pcap/pcapng reading, frame decoding, flow metering, live capture, and ingest of
capture files.
"""
