"""studiox: durable, governed, observable Missions written in YAML."""

__version__ = "0.1.0"
