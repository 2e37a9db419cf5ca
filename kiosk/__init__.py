"""The telehealth booth application: configuration, the visit, its controller."""

__version__ = "0.1.0"
