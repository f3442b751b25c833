"""Stage 4 of the pipeline, the embedding E: a parametric t-SNE of a layer's latents, and its quality.

Modules, one concept each:

* :mod:`.affinities` — sparse t-SNE input affinities from a kNN graph;
* :mod:`.parametric_tsne` — :class:`ParametricTSNE`, the MLP trained with the t-SNE loss (fit/transform);
* :mod:`.quality` — how well a 2-D map keeps the latents' neighbourhoods.
"""
from .parametric_tsne import ParametricTSNE, TSNEConfig

__all__ = ["ParametricTSNE", "TSNEConfig"]
