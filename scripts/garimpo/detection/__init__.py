"""Two-stage detection of a cell: proposers (spectral, SegFormer), the chip lattice and scan, chip scores,
polygons from chips and the region's merge. Builds on ``classifier``, ``imagery``, ``geo``, ``pixels``."""
