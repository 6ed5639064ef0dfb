"""k-means: the fit (driver, executors or MLlib), the nearest-center kernels (numpy, or torch on a GPU), the assignment pass, whitening."""
