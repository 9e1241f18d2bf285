"""Two-stage detection of a cell's composite, one concern per module. Builds on ``classifier``, ``imagery``,
``geo``, ``pixels``.

- ``proposers``: the proposer registry and the proposers (spectral, segformer, union), one module each;
- ``segformer``: the SegFormer model the segformer proposer runs (loading, sliding-window inference);
- ``lattice``: the chip lattice, the blocks a composite is streamed in, and which chips a mask selects;
- ``chips``: chip side, cutting chips out and stretching them as training did;
- ``candidates``: a proposer on one (optionally decimated) block;
- ``batching``: prefetch, fixed-size batches, the classifier's chip scorer;
- ``scan``: the brute-force and two-stage scans;
- ``chip_scores``: a scan's chip scores, on disk, as lon/lat squares and polygons;
- ``polygons``, ``merge``: the region's detections from every cell's chip scores.
"""
