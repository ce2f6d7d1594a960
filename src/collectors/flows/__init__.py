"""Flow exports of any format: the decoder dispatcher, flow batches, sequence accounting, export
files and the flows dataset writer.
"""
