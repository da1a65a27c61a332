"""What every layer shares: the metric writers, ConfigError and the config
schema (defaults)."""
