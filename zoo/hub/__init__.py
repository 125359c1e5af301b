"""The Hugging Face-compatible endpoint under /hf: ``views`` (the routes and their gate),
``files`` (git and LFS ids of a version's files), ``snippets`` (the model page's box),
``urls``."""
