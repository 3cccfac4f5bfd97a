"""Training and evaluation: metrics, weighted two-phase training, reports."""
