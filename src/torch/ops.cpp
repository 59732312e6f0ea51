// TORCH_LIBRARY(flatgather, ...) operators: see issue "Python: flatgather as PyTorch operators".
