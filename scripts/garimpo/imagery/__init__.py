"""Getting surface reflectance: STAC search and signing, the per-item radiometry rule (processing
baseline offsets), HTTP retries and redaction of signed URLs, the search cache, multi-date composites of
cells, and pinned downloads. Builds on ``geo`` and ``pixels``."""
