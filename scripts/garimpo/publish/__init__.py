"""Publishing: GIS formats, evidence thumbnails, web map, release bundle."""
