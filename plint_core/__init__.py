"""plint_core: the Projective Latent Interventions engine (no UI code)."""
