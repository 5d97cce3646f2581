"""Reading captchas with a package: the Solver, the readers, TensorFlow Lite, export, the demo server."""
