"""plint_core: the Projective Latent Interventions engine (no UI code)."""

__version__ = "0.5.0"
"""plint's version, written into run reports (:mod:`plint_core.report.html`)."""
