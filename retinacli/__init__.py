"""retina: batch fundus photograph analysis (vessels first; A/V, haemorrhages and grade hints build on it)."""
__version__ = "0.1.0"
