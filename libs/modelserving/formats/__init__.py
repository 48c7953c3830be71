"""Model artifact formats: what a model directory holds and how it is loaded."""
