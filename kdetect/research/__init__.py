"""Research tools kept apart from the library: the detector-against-baseline comparison, its report, the Chromium driver."""
