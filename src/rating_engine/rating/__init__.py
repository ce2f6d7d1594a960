"""Rating: the Numba kernels, the public rating API, period pricing and what-if comparisons."""
