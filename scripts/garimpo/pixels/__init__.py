"""Pure array functions on bands: spectral indices, percentile statistics, histogram-free matching to the
positives' P2/P98. No I/O, no georeferencing."""
