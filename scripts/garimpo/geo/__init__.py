"""Georeferencing at the edges: rasters (grid, bands by name), vector files, point tables, the global grid
of cells, GeoJSON out and geodesic measures. Imports nothing else of garimpo but ``errors`` and ``atomic``."""
