"""Getting surface reflectance, one concern per module. Builds on ``geo`` and ``pixels``.

- ``sensor``: the sensor profile (bands, providers' asset keys, mask classes, scale/offset); the seam for a
  new sensor. ``SENTINEL2_L2A`` is the default everywhere.
- ``radiometry``: how an item's DN become reflectance, decided from its own metadata.
- ``assets``: which asset holds which band, what to read of an item, which listings are one acquisition.
- ``stac``: where imagery comes from (``Source``, ``ImageryRequest``) and the STAC search; signing.
- ``retry``, ``redact``, ``cache``: retries of remote I/O, credentials out of every text, the search cache.
- ``read``: pixels of an item on a target grid, and its clear mask.
- ``composite``: multi-date composites, in memory or block by block into a GeoTIFF.
- ``provenance``: scene ids, dates and radiometry rules for the outputs' metadata.
- ``download``: pinned downloads.
"""
