"""NetFlow v1/v5/v7, NetFlow v9 and IPFIX: headers, templates, information elements, record
decoding and export encoders.
"""
