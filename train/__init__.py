"""The localization network: learns to find anomalies from generated shards."""
