"""Keras models: sea-ice CNNs (``seaice``) and crop-type time-series models (``crops``)."""
