"""TEP-style processors: a name, inputs (region, time, model) and a product (raster + polygons)."""
