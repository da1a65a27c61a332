"""What every layer shares: the metric writers and ConfigError."""
