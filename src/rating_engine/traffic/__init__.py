"""Traffic analytics over flows: aggregation, time buckets, top-N, 95th percentile, anomalies,
attribution to subscriptions and usage from flows.
"""
