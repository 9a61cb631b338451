"""logical: synthesis of logical and structural anomalies by edge manipulation (LogicAL)."""

__version__ = "0.1.0"
