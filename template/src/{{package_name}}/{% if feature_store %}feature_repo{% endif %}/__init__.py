"""The Feast feature repository: definitions only; io.feature_source applies and serves them."""
