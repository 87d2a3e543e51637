"""Input discovery, robust decoding and atomic output writing."""
