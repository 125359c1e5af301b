"""Machine-learning code for the workers: plain functions over arrays, tensors and paths.

Nothing here imports Django or the portal's apps, so it can be tested and
benchmarked on its own.
"""
