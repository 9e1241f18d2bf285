"""Not product code: the synthetic demo world, the bench granule and the proposer and merge benchmarks.
They call the product's functions; nothing in the product imports them."""
