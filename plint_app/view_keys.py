"""The session-state keys of the widgets that make up what a page shows.

The pages draw these widgets; a meeting (:mod:`plint_app.meeting`) copies their values from the presenter's
session into its followers'. This module imports nothing, so that :mod:`plint_app.meeting` can name the keys
before the engine loads.
"""

LAYER_KEY, EMB_SEED_KEY = "w_layer", "w_embedding_seed"
"""Model & data: the latent layer embedded, and the embedding's seed."""
DX, DY, CONTRACT = "w_dx", "w_dy", "w_contract"
"""Embedding: the pending move of the selection (translation and contraction)."""
LINKED_KEY = "w_linked_layer"
"""Embedding: the layer shown side by side."""
COLOR_KEY, SHOW_TEST_KEY, CLASSES_KEY = "w_color_by", "w_show_test", "w_classes"
"""Embedding: the colouring, whether test points show, the classes picked to select."""
PAIR_A, PAIR_B = "w_pair_a", "w_pair_b"
PAIR_DISTANCE, PAIR_CONTRACT, PAIR_OUTWARD = "w_pair_distance", "w_pair_contract", "w_pair_outward"
"""Embedding: the class-pair edit's classes and settings."""
FINETUNE_KEYS = ("w_lam", "w_steps", "w_lr", "w_seed", "w_batch", "w_seeds", "w_points", "w_epochs", "w_weighting",
                 "w_embed_on", "w_moved_per_batch", "w_class_weight", "w_optimizer", "w_select", "w_tolerance", "w_patience")
"""Fine-tune: the run's settings."""
QUERY_KEY = "w_neighbour_query"
"""Embedding: the search for an image (id or file name)."""
VERSUS_KEY = "w_versus"
"""Compare: run B of run against run."""
PICK_PREFIX = "w_pick_"
"""Compare: ``w_pick_<run id>``, the PLI checkpoint picked on the run's trade-off path."""
RUN_PAIR_PREFIXES = ("w_pair_a_", "w_pair_b_")
"""Compare: ``w_pair_a_<run id>``, ``w_pair_b_<run id>``, the class pair whose confusions are shown."""

SHARED = (LAYER_KEY, EMB_SEED_KEY, DX, DY, CONTRACT, LINKED_KEY, COLOR_KEY, SHOW_TEST_KEY, CLASSES_KEY, PAIR_A,
          PAIR_B, PAIR_DISTANCE, PAIR_CONTRACT, PAIR_OUTWARD, QUERY_KEY, *FINETUNE_KEYS, VERSUS_KEY)
"""The widgets whose values a follower shows as the presenter set them."""
