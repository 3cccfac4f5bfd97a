"""Training-data extraction: sea-ice patches (``patches``) and crop pixel series (``pixels``)."""
