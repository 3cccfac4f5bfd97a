"""Reproducible sample data: real metadata, simulated pixels.

``sentinel1`` builds a sea-ice SAR scene, ``sentinel2`` a multi-tile crop time
series; both register their STAC items in the local catalogue
(:mod:`workbench.catalog.local`).
"""
