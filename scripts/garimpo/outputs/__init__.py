"""What is published from detections: encroachment statistics on protected areas, maps, and object-level
evaluation against reference polygons. Builds on ``detection`` and ``geo``."""
